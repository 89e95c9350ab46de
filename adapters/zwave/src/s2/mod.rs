//! Security 2 (S2): key derivation and ciphers ([`crypto`]), singlecast sessions and
//! encapsulation ([`session`]), the key exchange's messages ([`kex`]) and the network keys
//! ([`keys`]). The bootstrap itself (who sends what, when) is in the runtime.
pub mod crypto;
pub mod kex;
pub mod keys;
pub mod session;
