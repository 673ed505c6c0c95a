//! The registry's admin: `deploy-registry`, `allow-measurement`,
//! `disallow-measurement`.

use anyhow::{anyhow, Context};
use chrysalis_attestation::ErrorCategory;
use chrysalis_ton::coins::NANOTONS_PER_TON;
use chrysalis_ton::registry::{
    self, ImageMeasurement, Label, RegistryMessage, TdxRegisters, TeeType,
};
use serde_json::{json, Value};

use super::args::{AllowArgs, DeployArgs, DisallowArgs};
use super::input::{addr_text, load_wallet, parse_addr, parse_coins};
use super::outcome::{fail, tf};
use super::send::{expiry, prepare, prepare_registry};
use crate::client::Failure;

/// `chrysalis ton deploy-registry`.
pub(super) fn deploy(d: DeployArgs) -> Result<Value, Failure> {
    let wallet = load_wallet(&d.wallet)?;
    let text = std::fs::read_to_string(&d.code)
        .with_context(|| d.code.display().to_string())
        .map_err(Failure::io)?;
    let j: Value = serde_json::from_str(&text).map_err(|e| {
        fail(
            ErrorCategory::Malformed,
            anyhow!("{}: {e}", d.code.display()),
        )
    })?;
    let b64 = j["codeBoc64"].as_str().ok_or_else(|| {
        fail(
            ErrorCategory::Malformed,
            anyhow!(
                "{}: no codeBoc64 (the output of contract/compile.js)",
                d.code.display()
            ),
        )
    })?;
    let code = tonlib_core::cell::BagOfCells::parse_base64(b64)
        .and_then(|b| b.single_root())
        .map_err(|e| {
            fail(
                ErrorCategory::Malformed,
                anyhow!("{}: {e}", d.code.display()),
            )
        })?;
    let code = (*code).clone();
    let min_stake = parse_coins("min-stake", &d.min_stake)?.nanotons();
    let data = registry::initial_data(wallet.address(), min_stake, d.unstake_delay).map_err(tf)?;
    let addr = registry::registry_address(&code, &data).map_err(tf)?;
    let body = chrysalis_ton::wallet::empty_body().map_err(tf)?;
    let p = prepare(
        wallet,
        addr.clone(),
        body,
        NANOTONS_PER_TON / 2,
        false,
        Some((code, data)),
        d.seqno,
        d.valid_until,
        &d.api,
    )?;
    let extra =
        json!({"min_stake_nanoton": min_stake.to_string(), "unstake_delay_s": d.unstake_delay});
    p.send_confirmed(
        "deploy the registry",
        extra,
        d.dry_run,
        d.json,
        &d.api,
        || format!("registry deployed at {}", addr_text(&addr)),
    )
}

/// `chrysalis ton allow-measurement`.
pub(super) fn allow(a: AllowArgs) -> Result<Value, Failure> {
    let wallet = load_wallet(&a.send.wallet)?;
    let registry_addr = parse_addr(&a.send.registry)?;
    let bad = |e: String| fail(ErrorCategory::Malformed, anyhow!(e));
    let (measurement, tee, release) = if let Some(path) = &a.measurements {
        let text = std::fs::read_to_string(path)
            .with_context(|| path.display().to_string())
            .map_err(Failure::io)?;
        let m = chrysalis_measurements::manifest::MeasurementsManifest::from_json(&text)
            .map_err(|e| bad(format!("{}: {e}", path.display())))?;
        let cfg = match (&a.config, m.configurations.len()) {
            (Some(n), _) => m
                .configurations
                .iter()
                .find(|c| &c.name == n)
                .ok_or_else(|| bad(format!("{}: no configuration {n:?}", path.display())))?,
            (None, 1) => &m.configurations[0],
            (None, _) => {
                let names: Vec<_> = m.configurations.iter().map(|c| c.name.as_str()).collect();
                return Err(bad(format!(
                    "{} has {} configurations; pick one with --config ({})",
                    path.display(),
                    names.len(),
                    names.join(", ")
                )));
            }
        };
        // The complete identity the configuration predicts (every
        // register; RTMR3 and HOST_DATA for the default host configuration,
        // as a client's default policy derives them), never a subset.
        let release_name = m
            .image
            .clone()
            .unwrap_or_else(|| "measurements.json".into());
        let published = chrysalis_releases::Release::parse(&release_name, &text)
            .map_err(|e| bad(format!("{}: {e}", path.display())))?;
        let conf = published
            .configuration(&cfg.name)
            .map_err(|e| bad(e.to_string()))?;
        let unverifiable = |why: chrysalis_releases::NotVerifiable| {
            bad(format!(
                "configuration {} cannot be allowed: {why}",
                cfg.name
            ))
        };
        let h = |field: &str, v: &Option<String>, n: usize| -> Result<Vec<u8>, Failure> {
            let v = v.clone().unwrap_or_else(|| "00".repeat(n));
            hex::decode(&v)
                .ok()
                .filter(|b| b.len() == n)
                .ok_or_else(|| {
                    bad(format!(
                        "configuration {}: {field} is not {n} bytes of hex",
                        cfg.name
                    ))
                })
        };
        let h48 = |field: &str, v: &Option<String>| -> Result<[u8; 48], Failure> {
            Ok(h(field, v, 48)?.try_into().unwrap_or([0; 48]))
        };
        let (meas, tee) = if let Some(set) = conf.tdx_set() {
            let set = set.map_err(unverifiable)?;
            (
                ImageMeasurement::tdx(&TdxRegisters {
                    mrtd: h48("mrtd", &set.mrtd)?,
                    rtmr: [
                        h48("rtmr0", &set.rtmr0)?,
                        h48("rtmr1", &set.rtmr1)?,
                        h48("rtmr2", &set.rtmr2)?,
                        h48("rtmr3", &set.rtmr3)?,
                    ],
                    mrconfigid: h48("mrconfigid", &set.mrconfigid)?,
                    mrowner: h48("mrowner", &set.mrowner)?,
                    mrownerconfig: h48("mrownerconfig", &set.mrownerconfig)?,
                }),
                TeeType::Tdx,
            )
        } else if let Some(set) = conf.snp_set() {
            let set = set.map_err(unverifiable)?;
            let host_data: [u8; 32] = h("host_data", &set.host_data, 32)?
                .try_into()
                .unwrap_or([0; 32]);
            (
                ImageMeasurement::snp(&h48("measurement", &set.measurement)?, &host_data),
                TeeType::Snp,
            )
        } else {
            return Err(bad(format!(
                "configuration {} has neither tdx nor snp values",
                cfg.name
            )));
        };
        let release = a
            .release
            .clone()
            .or(m.image.clone())
            .unwrap_or_else(|| cfg.name.clone());
        (meas, tee, release)
    } else {
        let hexm = a.measurement.as_deref().ok_or_else(|| {
            fail(
                ErrorCategory::Io,
                anyhow!("give --measurements FILE or --measurement HEX --tee tdx|snp"),
            )
        })?;
        let meas = ImageMeasurement::from_hex(hexm)
            .map_err(|e| fail(ErrorCategory::Malformed, e.into()))?;
        let tee = if a.tee.as_deref() == Some("snp") {
            TeeType::Snp
        } else {
            TeeType::Tdx
        };
        (
            meas,
            tee,
            a.release.clone().unwrap_or_else(|| "unnamed".into()),
        )
    };
    let release =
        Label::parse("release", &release).map_err(|e| fail(ErrorCategory::Malformed, e.into()))?;
    let vu = expiry(a.send.valid_until);
    let msg = RegistryMessage::AddMeasurement {
        query_id: u64::from(vu),
        measurement,
        tee,
        release: release.clone(),
    };
    let body = msg.to_cell().map_err(tf)?;
    let p = prepare_registry(wallet, registry_addr, body, &a.send, vu)?;
    let extra =
        json!({"measurement": measurement.to_hex(), "tee": tee, "release": release.as_str()});
    p.send_confirmed(
        "allow a measurement",
        extra,
        a.send.dry_run,
        a.send.json,
        &a.send.api,
        || {
            format!(
                "allowed {} ({:?}, {})",
                measurement.to_hex(),
                tee,
                release.as_str()
            )
        },
    )
}

/// `chrysalis ton disallow-measurement`.
pub(super) fn disallow(d: DisallowArgs) -> Result<Value, Failure> {
    let wallet = load_wallet(&d.send.wallet)?;
    let registry_addr = parse_addr(&d.send.registry)?;
    let measurement = ImageMeasurement::from_hex(&d.measurement)
        .map_err(|e| fail(ErrorCategory::Malformed, e.into()))?;
    let vu = expiry(d.send.valid_until);
    let msg = RegistryMessage::RemoveMeasurement {
        query_id: u64::from(vu),
        measurement,
    };
    let body = msg.to_cell().map_err(tf)?;
    let p = prepare_registry(wallet, registry_addr, body, &d.send, vu)?;
    let extra = json!({"measurement": measurement.to_hex()});
    p.send_confirmed(
        "disallow a measurement",
        extra,
        d.send.dry_run,
        d.send.json,
        &d.send.api,
        || format!("disallowed {}", measurement.to_hex()),
    )
}
