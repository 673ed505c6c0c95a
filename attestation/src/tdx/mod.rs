//! Intel TDX: quotes, collateral and verification.
