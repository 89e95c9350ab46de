//! Operator passwords: argon2id with the crate's default parameters (19 MiB, 2 passes, 1 lane),
//! stored as PHC strings (`$argon2id$v=19$m=19456,t=2,p=1$<salt>$<hash>`).
//!
//! Each hash needs 19 MiB of working memory. Taken from the allocator the usual way, glibc serves
//! it from a malloc arena once the first one has been freed (freeing a mapped block raises its
//! mmap threshold to that size), and the arena keeps the pages: a gateway that had checked one
//! password held about 20 MiB more for good (`tests/scripts/dashboard-footprint.sh`). Here the
//! block is reserved larger than glibc's highest mmap threshold (32 MiB), so it is always mapped on
//! its own and unmapped when the hash is done; only the 19 MiB argon2 writes are ever touched.

use argon2::password_hash::{Output, ParamsString, PasswordHash, SaltString};
use argon2::{Algorithm, Argon2, Block, Params, Version};

/// Bytes reserved for the working memory: above glibc's largest mmap threshold.
const RESERVE_BYTES: usize = 33 << 20;
/// Stored parameters beyond these are refused (a rewritten hash must not cost more to check).
const MAX_M_KIB: u32 = 64 * 1024;
const MAX_T: u32 = 8;
const MAX_P: u32 = 4;

/// argon2 into `out`, with working memory that goes back to the system afterwards.
fn raw(params: &Params, password: &[u8], salt: &[u8], out: &mut [u8]) -> Result<(), String> {
    let a = Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone());
    let blocks = params.block_count();
    let reserve = (RESERVE_BYTES / std::mem::size_of::<Block>()).max(blocks);
    let mut memory: Vec<Block> = Vec::with_capacity(reserve);
    memory.resize(blocks, Block::default());
    a.hash_password_into_with_memory(password, salt, out, memory.as_mut_slice())
        .map_err(|e| e.to_string())
}

/// A new PHC string for `password`, with a random salt.
pub fn hash(password: &str) -> Result<String, String> {
    let salt = SaltString::generate(&mut rand::rngs::OsRng);
    let mut salt_buf = [0u8; 64];
    let salt_bytes = salt.decode_b64(&mut salt_buf).map_err(|e| e.to_string())?;
    let params = Params::default();
    let mut out = [0u8; Params::DEFAULT_OUTPUT_LEN];
    raw(&params, password.as_bytes(), salt_bytes, &mut out)?;
    let phc = PasswordHash {
        algorithm: Algorithm::Argon2id.ident(),
        version: Some(Version::V0x13.into()),
        params: ParamsString::try_from(&params).map_err(|e| e.to_string())?,
        salt: Some(salt.as_salt()),
        hash: Some(Output::new(&out).map_err(|e| e.to_string())?),
    };
    Ok(phc.to_string())
}

/// Whether `password` matches the PHC string (argon2id only; false for anything unreadable).
pub fn verify(phc: &str, password: &str) -> bool {
    let Ok(h) = PasswordHash::new(phc) else {
        return false;
    };
    if h.algorithm != Algorithm::Argon2id.ident()
        || h.version.is_some_and(|v| v != u32::from(Version::V0x13))
    {
        return false;
    }
    let (Ok(params), Some(expected), Some(salt)) = (Params::try_from(&h), h.hash, h.salt) else {
        return false;
    };
    if params.m_cost() > MAX_M_KIB || params.t_cost() > MAX_T || params.p_cost() > MAX_P {
        return false;
    }
    let mut salt_buf = [0u8; 64];
    let Ok(salt_bytes) = salt.decode_b64(&mut salt_buf) else {
        return false;
    };
    let mut out = vec![0u8; expected.len()];
    if raw(&params, password.as_bytes(), salt_bytes, &mut out).is_err() {
        return false;
    }
    // Output's comparison takes the same time wherever the first difference is
    Output::new(&out).is_ok_and(|o| o == expected)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use argon2::password_hash::{PasswordHasher, PasswordVerifier};

    #[test]
    fn hashes_verify_both_ways_with_the_crates_own_hasher() {
        let mine = hash("correct horse battery").unwrap();
        assert!(
            mine.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
            "{mine}"
        );
        assert!(verify(&mine, "correct horse battery"));
        assert!(!verify(&mine, "correct horse batterY"));
        // the crate's own verifier accepts ours, and ours accepts the crate's (hashes stored by
        // earlier versions keep working)
        let h = PasswordHash::new(&mine).unwrap();
        assert!(
            Argon2::default()
                .verify_password(b"correct horse battery", &h)
                .is_ok()
        );
        let salt = SaltString::generate(&mut rand::rngs::OsRng);
        let theirs = Argon2::default()
            .hash_password(b"another password", &salt)
            .unwrap()
            .to_string();
        assert!(verify(&theirs, "another password"));
        assert!(!verify(&theirs, "correct horse battery"));
    }

    #[test]
    fn unreadable_or_costly_hashes_are_refused() {
        let good = hash("correct horse battery").unwrap();
        for bad in [
            String::new(),
            "not a hash".into(),
            good.replace("argon2id", "argon2i"),
            good.replace("v=19", "v=16"),
            good.replace("m=19456", "m=1048576"),
            good.replace("t=2", "t=100"),
            good.replace("p=1", "p=64"),
            good.rsplit_once('$').unwrap().0.to_owned(),
        ] {
            assert!(!verify(&bad, "correct horse battery"), "{bad}");
        }
    }
}
