//! Fault-tolerant pairs across boards, emulated: several boards on one network with a witness
//! ([`run`]), the hub that joins them ([`hub`]), and the oracle that judges the partition's
//! stream gathered from every board ([`oracle`]).

pub mod bench;
pub mod campaign;
pub mod demo;
pub mod hub;
pub mod oracle;
pub mod run;
pub mod scenarios;
