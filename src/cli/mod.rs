pub mod data;
pub mod export;
pub mod plan;
pub mod train;
pub mod triage;
