//! Fixed lists of counters that JSON shows as one object `{name: value}` (the `xdp` object
//! of `rport stats --json`, `nat.refresh_gaps`): the values live in an array in a fixed
//! order, the names beside them, so serde's derive has no field names to go by.

/// Implements `Serialize` and `Deserialize` for `$ty`, a tuple struct around `[u64; N]`,
/// as `{$names[i]: value[i]}` (`$names`: `[&str; N]`). Reading, a name that is absent
/// reads as 0 and an unknown one is ignored, so a client and a daemon of different
/// versions still agree on the counters both know.
macro_rules! serde_named {
    ($ty:ident, $names:expr) => {
        impl serde::Serialize for $ty {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_map($names.iter().zip(&self.0))
            }
        }

        impl<'de> serde::Deserialize<'de> for $ty {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let m: std::collections::BTreeMap<String, u64> =
                    serde::Deserialize::deserialize(d)?;
                Ok($ty($names.map(|n| m.get(n).copied().unwrap_or(0))))
            }
        }
    };
}
pub(crate) use serde_named;
