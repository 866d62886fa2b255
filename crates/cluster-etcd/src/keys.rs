//! The key layout under the cluster prefix `P`:
//!
//! | key | value | lease |
//! |---|---|---|
//! | `P/nodes/<node>` | [`NodeRecord`](crate::members::NodeRecord): lease, wall clock, claiming | the node's session |
//! | `P/jobs/<job>` | [`StoredDefinition`](crate::StoredDefinition) (JSON) | none |
//! | `P/fires/<job>/<instant>` | [`FireRecord`](crate::coordinator::FireRecord) | none: a fire taken stays taken |
//! | `P/inflight/<node>/<job>/<instant>` | the node's lease id | none (reaped by housekeeping) |
//! | `P/retries/<job>/<instant>` | empty: a lost fire offered again | none |
//! | `P/watermarks/<job>` | instant below which fires are refused and collected | none |
//! | `P/election` | etcd election of the housekeeping leader | the leader's session |
//!
//! `<instant>` is the nominal instant in Unix milliseconds, zero-padded to 20 digits
//! so that byte order (etcd's range and `value` comparisons) is time order.

use jiff::Timestamp;

/// Key builders for one prefix.
#[derive(Debug, Clone)]
pub(crate) struct Keys {
    prefix: String,
}

/// The padded instant.
pub(crate) fn instant(at: Timestamp) -> String {
    format!("{:020}", at.as_millisecond().max(0))
}

/// Parses a padded instant.
pub(crate) fn parse_instant(text: &str) -> Option<Timestamp> {
    Timestamp::from_millisecond(text.parse().ok()?).ok()
}

impl Keys {
    pub(crate) fn new(prefix: &str) -> Self {
        Self {
            prefix: prefix.to_owned(),
        }
    }

    pub(crate) fn prefix(&self) -> &str {
        &self.prefix
    }

    pub(crate) fn nodes(&self) -> String {
        format!("{}nodes/", self.prefix)
    }

    pub(crate) fn node(&self, node: &str) -> String {
        format!("{}nodes/{node}", self.prefix)
    }

    pub(crate) fn jobs(&self) -> String {
        format!("{}jobs/", self.prefix)
    }

    pub(crate) fn job(&self, job: &str) -> String {
        format!("{}jobs/{job}", self.prefix)
    }

    pub(crate) fn fires_of(&self, job: &str) -> String {
        format!("{}fires/{job}/", self.prefix)
    }

    pub(crate) fn fire(&self, job: &str, at: Timestamp) -> String {
        format!("{}fires/{job}/{}", self.prefix, instant(at))
    }

    pub(crate) fn inflight_all(&self) -> String {
        format!("{}inflight/", self.prefix)
    }

    pub(crate) fn inflight(&self, node: &str, job: &str, at: Timestamp) -> String {
        format!("{}inflight/{node}/{job}/{}", self.prefix, instant(at))
    }

    pub(crate) fn retries(&self) -> String {
        format!("{}retries/", self.prefix)
    }

    pub(crate) fn retry(&self, job: &str, at: Timestamp) -> String {
        format!("{}retries/{job}/{}", self.prefix, instant(at))
    }

    pub(crate) fn watermark(&self, job: &str) -> String {
        format!("{}watermarks/{job}", self.prefix)
    }

    pub(crate) fn election(&self) -> String {
        format!("{}election", self.prefix)
    }

    /// `(node, job, instant)` of an in-flight key.
    pub(crate) fn parse_inflight(&self, key: &[u8]) -> Option<(String, String, Timestamp)> {
        let rest = std::str::from_utf8(key)
            .ok()?
            .strip_prefix(&self.inflight_all())?;
        let mut parts = rest.splitn(3, '/');
        let node = parts.next()?;
        let job = parts.next()?;
        let at = parse_instant(parts.next()?)?;
        Some((node.to_owned(), job.to_owned(), at))
    }

    /// `(job, instant)` of a retry key.
    pub(crate) fn parse_retry(&self, key: &[u8]) -> Option<(String, Timestamp)> {
        let rest = std::str::from_utf8(key)
            .ok()?
            .strip_prefix(&self.retries())?;
        let (job, at) = rest.split_once('/')?;
        Some((job.to_owned(), parse_instant(at)?))
    }

    /// The last segment of a key under `parent`.
    pub(crate) fn child<'k>(&self, parent: &str, key: &'k [u8]) -> Option<&'k str> {
        std::str::from_utf8(key).ok()?.strip_prefix(parent)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instants_sort_as_bytes_and_round_trip() {
        let a = Timestamp::from_millisecond(999).expect("ts");
        let b = Timestamp::from_millisecond(1_732_406_400_123).expect("ts");
        assert!(instant(a) < instant(b));
        assert_eq!(instant(b).len(), 20);
        assert_eq!(parse_instant(&instant(b)), Some(b));
    }

    #[test]
    fn keys_parse_back() {
        let k = Keys::new("/s/");
        let at = Timestamp::from_millisecond(1_000).expect("ts");
        let key = k.inflight("n1", "job.a", at);
        assert_eq!(
            k.parse_inflight(key.as_bytes()),
            Some(("n1".into(), "job.a".into(), at))
        );
        let key = k.retry("j", at);
        assert_eq!(k.parse_retry(key.as_bytes()), Some(("j".into(), at)));
        assert_eq!(k.child(&k.nodes(), b"/s/nodes/n2"), Some("n2"));
    }
}
