//! The everyday guest's numbered lines: `count N`, or with `hashed=1` `count N h=H` where H is a
//! running FNV-1a hash of the stream, so an output oracle sees any line that differs.

use crate::{Runtime, say};

pub fn count_lines<R: Runtime>(count: u32) {
    let hashed = R::partition_info().number::<u32>("hashed") == Some(1);
    let mut hash: u32 = 0x811c_9dc5;
    for i in 1..=count {
        if hashed {
            // FNV-1a over the count's bytes, carried from line to line.
            hash = i
                .to_le_bytes()
                .iter()
                .fold(hash, |h, &b| (h ^ u32::from(b)).wrapping_mul(0x0100_0193));
            say!(R, "count {i} h={hash:08x}");
        } else {
            say!(R, "count {i}");
        }
    }
}
