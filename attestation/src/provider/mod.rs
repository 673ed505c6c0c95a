//! Guest-side evidence providers.
