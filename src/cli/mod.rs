pub mod data;
pub mod export;
pub mod generate;
pub mod methods;
pub mod models;
pub mod plan;
pub mod train;
pub mod triage;
