//! OpenSSL's one-time initialisation, made cheap.
//!
//! sequoia's OpenSSL backend initialises OpenSSL from a constructor that runs before `main` in
//! every process linking it, which is every `distill` command, `run`, `exec` and `ps`
//! included. With OpenSSL's defaults that means loading every libcrypto and libssl error
//! string into a hash table, registering every cipher and digest by name and looking for
//! `openssl.cnf`: 1.4 M instructions, more than the rest of `distill ps` (docs/design.md,
//! "Start-up cost").
//!
//! This constructor runs first (priority `early` sorts before sequoia's default-priority one)
//! and initialises OpenSSL without them. OpenSSL then ignores the later requests to load them.
//! - The legacy name tables of every cipher and digest (`EVP_get_cipherbyname`): sequoia's
//!   OpenSSL layer fetches algorithms from OpenSSL 3's providers, which do not use them.
//! - Error strings: nothing distill or sequoia shows a user is built from them (sequoia
//!   reports its own errors), so they were loaded for nothing.
//! - Configuration: the trust decision on a manifest does not depend on an ambient
//!   `openssl.cnf` or `OPENSSL_CONF` of the machine it runs on; the same signed manifest
//!   verifies the same everywhere.

use std::ffi::{c_int, c_void};

// From OpenSSL's public headers (crypto.h, ssl.h); stable since 1.1.0.
const OPENSSL_INIT_NO_LOAD_CRYPTO_STRINGS: u64 = 0x0000_0001;
const OPENSSL_INIT_NO_ADD_ALL_CIPHERS: u64 = 0x0000_0010;
const OPENSSL_INIT_NO_ADD_ALL_DIGESTS: u64 = 0x0000_0020;
const OPENSSL_INIT_NO_LOAD_CONFIG: u64 = 0x0000_0080;
const OPENSSL_INIT_NO_ATEXIT: u64 = 0x0008_0000;
const OPENSSL_INIT_NO_LOAD_SSL_STRINGS: u64 = 0x0010_0000;

extern "C" {
    fn OPENSSL_init_crypto(opts: u64, settings: *const c_void) -> c_int;
}

#[ctor::ctor(unsafe, priority = early)]
fn init_openssl_quietly() {
    let crypto = OPENSSL_INIT_NO_LOAD_CRYPTO_STRINGS
        | OPENSSL_INIT_NO_LOAD_CONFIG
        | OPENSSL_INIT_NO_ADD_ALL_CIPHERS
        | OPENSSL_INIT_NO_ADD_ALL_DIGESTS;
    // SAFETY: OpenSSL's documented initialisation entry points; a null settings pointer means
    // the defaults. Both are idempotent and thread-safe, and run here before any other use.
    unsafe {
        OPENSSL_init_crypto(crypto | OPENSSL_INIT_NO_ATEXIT, std::ptr::null());
        openssl_sys::OPENSSL_init_ssl(
            crypto | OPENSSL_INIT_NO_LOAD_SSL_STRINGS | OPENSSL_INIT_NO_ATEXIT,
            std::ptr::null(),
        );
    }
}

#[cfg(test)]
mod tests {
    use std::ffi::{c_char, c_ulong};

    extern "C" {
        fn ERR_reason_error_string(e: c_ulong) -> *const c_char;
    }

    /// The constructor ran before sequoia's: OpenSSL has no error strings loaded. (Had
    /// sequoia's run first, they would be, and every command would pay for them again.)
    #[test]
    fn openssl_is_initialised_without_error_strings() {
        // sequoia's backend is linked: its constructor has run by now.
        assert!(sequoia_openpgp::crypto::backend().contains("OpenSSL"));
        // ERR_PACK(ERR_LIB_EVP = 6, 0, EVP_R_BAD_DECRYPT = 100), "bad decrypt" when loaded.
        let code: c_ulong = (6 << 23) | 100;
        // SAFETY: a lookup in OpenSSL's (initialised) error string table.
        let s = unsafe { ERR_reason_error_string(code) };
        assert!(s.is_null(), "OpenSSL loaded its error strings");
    }
}
