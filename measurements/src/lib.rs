//! Measurements (placeholder)
