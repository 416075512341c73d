//! Listing an archive without unpacking it: a zip's central directory (WAR, JAR, EAR, ZIP), a plain
//! tar's headers. Listing needs no decompression, so no compression library is linked.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::Path;

use pushguide_core::steps::ManifestEntry;

/// Largest central directory read (a zip with far more entries breaks any sane convention anyway).
const MAX_CENTRAL_DIR: u64 = 256 * 1024 * 1024;

/// What can go wrong while listing: an I/O error, or a message about the format.
#[derive(Debug)]
pub(crate) enum ListError {
    Io(io::Error),
    Format(String),
}

impl From<io::Error> for ListError {
    fn from(e: io::Error) -> Self {
        ListError::Io(e)
    }
}

fn bad<T>(msg: impl Into<String>) -> Result<T, ListError> {
    Err(ListError::Format(msg.into()))
}

fn u16_at(b: &[u8], i: usize) -> u16 {
    u16::from_le_bytes([b[i], b[i + 1]])
}

fn u32_at(b: &[u8], i: usize) -> u32 {
    u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]])
}

fn u64_at(b: &[u8], i: usize) -> u64 {
    let mut a = [0; 8];
    a.copy_from_slice(&b[i..i + 8]);
    u64::from_le_bytes(a)
}

fn read_at(f: &mut File, offset: u64, len: usize) -> Result<Vec<u8>, ListError> {
    f.seek(SeekFrom::Start(offset))?;
    let mut buf = vec![0; len];
    f.read_exact(&mut buf)?;
    Ok(buf)
}

/// Rejects entry names that would land outside the release directory when unpacked.
fn check_entry(path: &str) -> Result<(), ListError> {
    let p = path.replace('\\', "/");
    if p.starts_with('/') || p.as_bytes().get(1) == Some(&b':') {
        return bad(format!(
            "entry \"{}\" has an absolute path",
            p.escape_debug()
        ));
    }
    if p.split('/').any(|c| c == "..") {
        return bad(format!(
            "entry \"{}\" has a `..` component (it would unpack outside the release directory)",
            p.escape_debug()
        ));
    }
    if p.chars().any(char::is_control) {
        return bad(format!(
            "entry \"{}\" has a control character",
            p.escape_debug()
        ));
    }
    Ok(())
}

/// How many bytes at the end of a zip archive of `len` bytes hold its end-of-central-directory
/// record: 22 bytes plus a comment of up to 65535 bytes.
pub(crate) fn zip_tail_len(len: u64) -> u64 {
    len.min(22 + 65_535)
}

/// Where the central directory is, as read from the end of the archive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct CentralDir {
    pub(crate) count: u64,
    pub(crate) size: u64,
    pub(crate) offset: u64,
}

/// What the end-of-central-directory record says: the central directory, or (ZIP64) the offset of
/// the 20-byte ZIP64 locator to read next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ZipEnd {
    Found(CentralDir),
    Zip64Locator(u64),
}

/// Finds the end-of-central-directory record in `tail`, the last [`zip_tail_len`] bytes of an
/// archive of `len` bytes.
pub(crate) fn zip_end(tail: &[u8], len: u64) -> Result<ZipEnd, ListError> {
    if len < 22 || tail.len() < 22 {
        return bad("too short to be a zip archive");
    }
    let Some(eocd) = (0..=tail.len() - 22).rev().find(|&i| {
        u32_at(tail, i) == 0x0605_4b50 && i + 22 + u16_at(tail, i + 20) as usize == tail.len()
    }) else {
        return bad("no end-of-central-directory record: not a zip archive");
    };
    let eocd_pos = len - tail.len() as u64 + eocd as u64;
    let count = u64::from(u16_at(tail, eocd + 10));
    let size = u64::from(u32_at(tail, eocd + 12));
    let offset = u64::from(u32_at(tail, eocd + 16));
    if count == 0xFFFF || size == 0xFFFF_FFFF || offset == 0xFFFF_FFFF {
        if eocd_pos < 20 {
            return bad("ZIP64 values without a ZIP64 locator");
        }
        return Ok(ZipEnd::Zip64Locator(eocd_pos - 20));
    }
    Ok(ZipEnd::Found(CentralDir {
        count,
        size,
        offset,
    }))
}

/// Reads the 20-byte ZIP64 locator: the offset of the 56-byte ZIP64 end record.
pub(crate) fn zip64_locator(loc: &[u8]) -> Result<u64, ListError> {
    if loc.len() < 20 || u32_at(loc, 0) != 0x0706_4b50 {
        return bad("ZIP64 values without a ZIP64 locator");
    }
    Ok(u64_at(loc, 8))
}

/// Reads the 56-byte ZIP64 end record.
pub(crate) fn zip64_end(z: &[u8]) -> Result<CentralDir, ListError> {
    if z.len() < 56 || u32_at(z, 0) != 0x0606_4b50 {
        return bad("the ZIP64 locator points to no ZIP64 end record");
    }
    Ok(CentralDir {
        count: u64_at(z, 32),
        size: u64_at(z, 40),
        offset: u64_at(z, 48),
    })
}

/// Checks that the central directory lies inside an archive of `len` bytes and is not huge.
pub(crate) fn check_central_dir(cd: &CentralDir, len: u64) -> Result<(), ListError> {
    if cd.size > MAX_CENTRAL_DIR || cd.offset.checked_add(cd.size).is_none_or(|e| e > len) {
        return bad("the central directory lies outside the file");
    }
    Ok(())
}

/// The entries of the central directory `cd` holding `count` entries.
pub(crate) fn central_dir_entries(cd: &[u8], count: u64) -> Result<Vec<ManifestEntry>, ListError> {
    let mut out = Vec::with_capacity(count.min(100_000) as usize);
    let mut i = 0;
    for n in 0..count {
        if i + 46 > cd.len() || u32_at(cd, i) != 0x0201_4b50 {
            return bad(format!("central directory entry {n} is damaged"));
        }
        let name_len = u16_at(cd, i + 28) as usize;
        let extra_len = u16_at(cd, i + 30) as usize;
        let comment_len = u16_at(cd, i + 32) as usize;
        let end = i + 46 + name_len + extra_len + comment_len;
        if end > cd.len() {
            return bad(format!("central directory entry {n} is truncated"));
        }
        let name = String::from_utf8_lossy(&cd[i + 46..i + 46 + name_len]).into_owned();
        let mut size = u64::from(u32_at(cd, i + 24));
        if size == 0xFFFF_FFFF {
            // ZIP64 extended information: the uncompressed size comes first.
            let extra = &cd[i + 46 + name_len..i + 46 + name_len + extra_len];
            let mut j = 0;
            while j + 4 <= extra.len() {
                let id = u16_at(extra, j);
                let l = u16_at(extra, j + 2) as usize;
                if id == 0x0001 && l >= 8 && j + 12 <= extra.len() {
                    size = u64_at(extra, j + 4);
                    break;
                }
                j += 4 + l;
            }
        }
        check_entry(&name)?;
        out.push(ManifestEntry { path: name, size });
        i = end;
    }
    Ok(out)
}

/// The entries of a zip archive of `len` bytes, read through `read_at(offset, len)` (a file, a
/// buffer): the end record, the ZIP64 records when needed, then the central directory only.
pub(crate) fn list_zip_with(
    len: u64,
    mut read_at: impl FnMut(u64, usize) -> Result<Vec<u8>, ListError>,
) -> Result<Vec<ManifestEntry>, ListError> {
    if len < 22 {
        return bad("too short to be a zip archive");
    }
    let tail_len = zip_tail_len(len);
    let tail = read_at(len - tail_len, tail_len as usize)?;
    let cd = match zip_end(&tail, len)? {
        ZipEnd::Found(cd) => cd,
        ZipEnd::Zip64Locator(at) => {
            let record = zip64_locator(&read_at(at, 20)?)?;
            if record.checked_add(56).is_none_or(|e| e > len) {
                return bad("the ZIP64 locator points outside the file");
            }
            zip64_end(&read_at(record, 56)?)?
        }
    };
    check_central_dir(&cd, len)?;
    let bytes = read_at(cd.offset, cd.size as usize)?;
    central_dir_entries(&bytes, cd.count)
}

/// The entries of a zip archive, from its central directory (ZIP64 included).
pub(crate) fn list_zip(path: &Path) -> Result<Vec<ManifestEntry>, ListError> {
    let mut f = File::open(path)?;
    let len = f.metadata()?.len();
    list_zip_with(len, |offset, n| read_at(&mut f, offset, n))
}

fn octal(field: &[u8]) -> Option<u64> {
    if field.first().is_some_and(|b| b & 0x80 != 0) {
        // GNU base-256 for large sizes.
        return Some(
            field[1..]
                .iter()
                .fold(u64::from(field[0] & 0x7f), |a, &b| (a << 8) | u64::from(b)),
        );
    }
    let s = std::str::from_utf8(field).ok()?;
    let s = s.trim_matches(|c: char| c == '\0' || c == ' ');
    if s.is_empty() {
        return Some(0);
    }
    u64::from_str_radix(s, 8).ok()
}

fn cstr(field: &[u8]) -> String {
    let end = field.iter().position(|&b| b == 0).unwrap_or(field.len());
    String::from_utf8_lossy(&field[..end]).into_owned()
}

/// The entries of an uncompressed tar archive (ustar, GNU long names, PAX `path`).
pub(crate) fn list_tar(path: &Path) -> Result<Vec<ManifestEntry>, ListError> {
    let mut f = File::open(path)?;
    let len = f.metadata()?.len();
    let mut out = Vec::new();
    let mut pos = 0u64;
    let mut long_name: Option<String> = None;
    while pos + 512 <= len {
        let h = read_at(&mut f, pos, 512)?;
        if h.iter().all(|&b| b == 0) {
            break;
        }
        let Some(size) = octal(&h[124..136]) else {
            return bad(format!("damaged tar header at offset {pos}"));
        };
        let data = pos + 512;
        let next = data
            .checked_add(size.div_ceil(512) * 512)
            .filter(|&n| n <= len)
            .ok_or_else(|| ListError::Format(format!("tar entry at offset {pos} is truncated")))?;
        match h[156] {
            b'L' | b'x' => {
                let body = read_at(&mut f, data, size.min(1 << 20) as usize)?;
                long_name = if h[156] == b'L' {
                    Some(cstr(&body))
                } else {
                    pax_path(&body).or(long_name)
                };
            }
            b'g' => {}
            kind => {
                let mut name = long_name.take().unwrap_or_else(|| {
                    let base = cstr(&h[0..100]);
                    let prefix = if &h[257..262] == b"ustar" {
                        cstr(&h[345..500])
                    } else {
                        String::new()
                    };
                    if prefix.is_empty() {
                        base
                    } else {
                        format!("{prefix}/{base}")
                    }
                });
                name = name.trim_start_matches("./").to_owned();
                // `.` is the archive's own root (`tar -C dir .`), not an entry.
                if name == "." || name.is_empty() {
                    pos = next;
                    continue;
                }
                if kind == b'5' && !name.ends_with('/') {
                    name.push('/');
                }
                {
                    check_entry(&name)?;
                    let size = if kind == b'5' { 0 } else { size };
                    out.push(ManifestEntry { path: name, size });
                }
            }
        }
        pos = next;
    }
    Ok(out)
}

fn pax_path(body: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(body);
    let mut rest: &str = &text;
    while !rest.is_empty() {
        let (len_text, _) = rest.split_once(' ')?;
        let len: usize = len_text.parse().ok()?;
        // A record is "<len> <key>=<value>\n", `len` counting the whole record.
        let kv = rest.get(len_text.len() + 1..len)?;
        if let Some(v) = kv.strip_prefix("path=") {
            return Some(v.trim_end_matches('\n').to_owned());
        }
        rest = rest.get(len..)?;
    }
    None
}
