//! The pristine image's hash: checked before every microreboot copies the image back, so it must
//! be cheap over a few hundred KiB in an emulator that counts instructions. A word at a time: a
//! rotate-xor lane (any single flipped bit changes it) and an add lane (so flips the rotation
//! would align cannot cancel in both), finished by a multiply-xor mix. Not cryptographic: it
//! finds faults, not attackers (the copy is only writable by the hypervisor).

/// The hash of `bytes` (a trailing partial word counts, zero-padded, with the length).
pub fn hash(bytes: &[u8]) -> u64 {
    let (mut rot, mut sum) = (0x243f_6a88_85a3_08d3_u64, 0x1319_8a2e_0370_7344_u64);
    let words = bytes.chunks_exact(8);
    let tail = words.remainder();
    for word in words {
        let mut w = [0u8; 8];
        w.copy_from_slice(word);
        let w = u64::from_le_bytes(w);
        rot = rot.rotate_left(5) ^ w;
        sum = sum.wrapping_add(w);
    }
    let mut last = [0u8; 8];
    last[..tail.len()].copy_from_slice(tail);
    let w = u64::from_le_bytes(last) ^ bytes.len() as u64;
    rot = rot.rotate_left(5) ^ w;
    sum = sum.wrapping_add(w);
    let mut h = rot ^ sum.rotate_left(32);
    h = (h ^ (h >> 33)).wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^ (h >> 33)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_single_and_double_bit_flip_of_a_small_image_changes_the_hash() {
        let image: Vec<u8> = (0..64u32).map(|i| (i * 37 + 11) as u8).collect();
        let good = hash(&image);
        for a in 0..image.len() * 8 {
            let mut bad = image.clone();
            bad[a / 8] ^= 1 << (a % 8);
            assert_ne!(hash(&bad), good, "bit {a}");
            for b in (a + 1)..image.len() * 8 {
                let mut worse = bad.clone();
                worse[b / 8] ^= 1 << (b % 8);
                assert_ne!(hash(&worse), good, "bits {a} and {b}");
            }
        }
    }

    #[test]
    fn length_and_tail_count() {
        assert_ne!(hash(b"abc"), hash(b"abc\0"));
        assert_ne!(hash(b""), hash(b"\0"));
        assert_eq!(hash(b"same bytes"), hash(b"same bytes"));
    }
}
