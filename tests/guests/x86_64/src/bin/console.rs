//! Abuses the shared console (floods it, forges another partition's prefix) or measures how long
//! its own lines take beside such a neighbour: see `checks::console_guest`.
#![no_std]
#![no_main]

use tandem_guest::Guest;
use tandem_guest::common::checks::console_guest;

tandem_guest::entry!(console_guest::<Guest>);
