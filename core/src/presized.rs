//! Collections read back from a snapshot sized up front from the length the format states.
//!
//! serde's own `Vec` and `HashMap` take at most about a megabyte from a stated length (a
//! defence against a length no data backs) and grow from there: for a million customers that is
//! twenty doublings, each a copy of everything read so far into fresh pages. These reserve the
//! stated length up to [`MOST`] elements, with `try_reserve`: a damaged length costs at most
//! that much address space, untouched until filled, and the decoding then fails at the data's
//! end; a reservation the system refuses is not a failure (the collection grows as it fills).
//! The encoded form is unchanged.
//! Use with `#[serde(deserialize_with = "crate::presized::vec")]` (or `hash_map`).

use std::fmt;
use std::hash::{BuildHasher, Hash};
use std::marker::PhantomData;

use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};

/// The most elements taken from a stated length.
pub const MOST: usize = 1 << 23;

fn capacity(stated: Option<usize>) -> usize {
    stated.unwrap_or(0).min(MOST)
}

/// A `Vec` sized from the sequence's stated length.
pub fn vec<'de, D, T>(deserializer: D) -> Result<Vec<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    struct Sequence<T>(PhantomData<T>);

    impl<'de, T: Deserialize<'de>> Visitor<'de> for Sequence<T> {
        type Value = Vec<T>;

        fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
            formatter.write_str("a sequence")
        }

        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<T>, A::Error> {
            let mut values = Vec::new();
            // Refused (no room for it): grown as the values come instead.
            let _ = values.try_reserve(capacity(seq.size_hint()));
            while let Some(value) = seq.next_element()? {
                values.push(value);
            }
            Ok(values)
        }
    }

    deserializer.deserialize_seq(Sequence(PhantomData))
}

/// A hash map sized from the map's stated length.
pub fn hash_map<'de, D, K, V, S>(
    deserializer: D,
) -> Result<std::collections::HashMap<K, V, S>, D::Error>
where
    D: Deserializer<'de>,
    K: Deserialize<'de> + Eq + Hash,
    V: Deserialize<'de>,
    S: BuildHasher + Default,
{
    struct Entries<K, V, S>(PhantomData<(K, V, S)>);

    impl<'de, K, V, S> Visitor<'de> for Entries<K, V, S>
    where
        K: Deserialize<'de> + Eq + Hash,
        V: Deserialize<'de>,
        S: BuildHasher + Default,
    {
        type Value = std::collections::HashMap<K, V, S>;

        fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
            formatter.write_str("a map")
        }

        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            let mut entries = std::collections::HashMap::with_hasher(S::default());
            // Refused (no room for it): grown as the entries come instead.
            let _ = entries.try_reserve(capacity(map.size_hint()));
            while let Some((key, value)) = map.next_entry()? {
                entries.insert(key, value);
            }
            Ok(entries)
        }
    }

    deserializer.deserialize_map(Entries(PhantomData))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
    struct Held {
        #[serde(deserialize_with = "vec")]
        values: Vec<u32>,
        #[serde(deserialize_with = "hash_map")]
        by_name: rustc_hash::FxHashMap<String, u32>,
    }

    #[test]
    fn what_is_read_is_what_was_written_and_sized_to_it() {
        let held = Held {
            values: (0..100_000).collect(),
            by_name: (0..1_000).map(|n| (format!("c-{n:06}"), n)).collect(),
        };
        let json = serde_json::to_string(&held).unwrap_or_default();
        let back: Held = serde_json::from_str(&json).unwrap_or_else(|error| panic!("{error}"));
        assert_eq!(back, held);
        // JSON states no length: grown as it comes. A format that does is sized once.
        let packed = rmp_serde::to_vec_named(&held).unwrap_or_default();
        let back: Held = rmp_serde::from_slice(&packed).unwrap_or_else(|error| panic!("{error}"));
        assert_eq!(back.values.capacity(), 100_000);
        assert_eq!(back, held);
    }

    #[test]
    fn a_stated_length_no_data_backs_fails_without_taking_it_all() {
        // An array stating 2^32 - 1 elements, with none.
        let packed = [
            0x81, 0xa6, b'v', b'a', b'l', b'u', b'e', b's', 0xdd, 0xff, 0xff, 0xff, 0xff,
        ];
        assert!(rmp_serde::from_slice::<Held>(&packed).is_err());
        assert_eq!(capacity(Some(usize::MAX)), MOST);
    }
}
