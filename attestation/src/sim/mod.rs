//! Simulated TEE: evidence signed by roots generated at run time.
