//! The bundle embedded in a hypervisor image: the encoded configuration and the guest images.
//!
//! Layout (little-endian): magic `TANDEMB1`, body length (u32), CRC-32 of the body (u32); the body
//! is the config length (u32) and bytes, the image count (u32), then each image's length (u32) and
//! bytes. The host tool writes it with [`encode`]; the hypervisor checks it with [`Bundle::parse`].

use crc::{CRC_32_ISO_HDLC, Crc, Table};

use crate::config::{self, CMDLINE_LEN, ConfigError, ImageSource, System};

pub const MAGIC: [u8; 8] = *b"TANDEMB1";
const HEADER: usize = 16;
/// Slice-by-16 (16 KiB of tables in the image): images carried beside the hypervisor run to tens
/// of MiB, and the byte-wise table took 0.3 s of virtual boot for a 33 MiB Linux Image.
const CRC: Crc<u32, Table<16>> = Crc::<u32, Table<16>>::new(&CRC_32_ISO_HDLC);

/// Why an embedded bundle was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum BundleError {
    BadMagic,
    Truncated,
    ChecksumMismatch {
        expected: u32,
        found: u32,
    },
    /// The configuration bytes do not decode.
    BadConfig,
    Invalid(InvalidConfig),
    /// A partition names an image the bundle does not have, or sizes disagree.
    MissingImage {
        partition: u8,
    },
}

/// A validation failure, as plain values so it can be logged without formatting machinery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct InvalidConfig {
    pub partition: Option<u8>,
    pub field: &'static str,
}

impl From<ConfigError> for InvalidConfig {
    fn from(e: ConfigError) -> Self {
        Self {
            partition: e.field.partition.map(|p| p as u8),
            field: e.field.name,
        }
    }
}

/// The CRC-32 (ISO-HDLC) of `bytes`: the bundle's checksum, and that of each image carried
/// beside the hypervisor.
pub fn crc32(bytes: &[u8]) -> u32 {
    CRC.checksum(bytes)
}

fn u32_at(bytes: &[u8], at: usize) -> Result<u32, BundleError> {
    let b = bytes.get(at..at + 4).ok_or(BundleError::Truncated)?;
    Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}

fn take<'a>(body: &'a [u8], at: &mut usize) -> Result<&'a [u8], BundleError> {
    let len = u32_at(body, *at)? as usize;
    let start = *at + 4;
    let bytes = body.get(start..start + len).ok_or(BundleError::Truncated)?;
    *at = start + len;
    Ok(bytes)
}

/// A checked bundle: a valid configuration whose images are all present.
pub struct Bundle<'a> {
    pub system: System,
    images: &'a [u8],
    count: u32,
}

impl<'a> Bundle<'a> {
    pub fn parse(bytes: &'a [u8]) -> Result<Self, BundleError> {
        if bytes.len() < HEADER || bytes[..8] != MAGIC {
            return Err(BundleError::BadMagic);
        }
        let len = u32_at(bytes, 8)? as usize;
        let expected = u32_at(bytes, 12)?;
        let body = bytes
            .get(HEADER..HEADER + len)
            .ok_or(BundleError::Truncated)?;
        let found = CRC.checksum(body);
        if found != expected {
            return Err(BundleError::ChecksumMismatch { expected, found });
        }
        let mut at = 0;
        let config_bytes = take(body, &mut at)?;
        let system: System =
            postcard::from_bytes(config_bytes).map_err(|_| BundleError::BadConfig)?;
        config::validate(&system).map_err(|e| BundleError::Invalid(e.into()))?;
        let count = u32_at(body, at)?;
        let bundle = Self {
            system,
            images: &body[at + 4..],
            count,
        };
        for (i, p) in bundle.system.partitions.iter().enumerate() {
            // An image carried beside the hypervisor is checked where it is read (`crc32`).
            let holds = |source, size| match source {
                ImageSource::Bundle { index } => bundle
                    .image(index)
                    .is_some_and(|img| img.len() as u64 == size),
                ImageSource::Beside { .. } => true,
            };
            let kernel_parts = p.kernel.is_none_or(|k| {
                k.initrd
                    .is_none_or(|initrd| holds(initrd.source, initrd.size))
                    && k.cmdline.is_none_or(|index| {
                        bundle
                            .image(index)
                            .is_some_and(|line| line.len() <= CMDLINE_LEN)
                    })
            });
            if !holds(p.image.source, p.image.size) || !kernel_parts {
                return Err(BundleError::MissingImage { partition: i as u8 });
            }
        }
        Ok(bundle)
    }

    /// The bytes of image `index`.
    pub fn image(&self, index: u8) -> Option<&'a [u8]> {
        if u32::from(index) >= self.count {
            return None;
        }
        let mut at = 0;
        let mut image = None;
        for _ in 0..=index {
            image = Some(take(self.images, &mut at).ok()?);
        }
        image
    }
}

/// Writes a bundle of `config` (postcard-encoded [`System`]) and `images` through `out`.
pub fn encode(config: &[u8], images: &[&[u8]], mut out: impl FnMut(&[u8])) {
    let mut body_len = 4 + config.len() + 4;
    let mut digest = CRC.digest();
    let feed = |bytes: &[u8], digest: &mut crc::Digest<'_, u32, Table<16>>| digest.update(bytes);
    feed(&(config.len() as u32).to_le_bytes(), &mut digest);
    feed(config, &mut digest);
    feed(&(images.len() as u32).to_le_bytes(), &mut digest);
    for img in images {
        feed(&(img.len() as u32).to_le_bytes(), &mut digest);
        feed(img, &mut digest);
        body_len += 4 + img.len();
    }
    out(&MAGIC);
    out(&(body_len as u32).to_le_bytes());
    out(&digest.finalize().to_le_bytes());
    out(&(config.len() as u32).to_le_bytes());
    out(config);
    out(&(images.len() as u32).to_le_bytes());
    for img in images {
        out(&(img.len() as u32).to_le_bytes());
        out(img);
    }
}
