//! Label enforcement: every series gets the tenant label, exactly once, with the tenant's
//! value, in a label set that stays sorted by name with unique names (receivers refuse
//! others). One algorithm serves both versions: 1.0's labels are strings, 2.0's are pairs of
//! refs into the symbols table, resolved through one trait.

use super::{v1, v2, Decoded, WriteError};

/// The tenant label every series is written with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stamp {
    /// The label's name, e.g. `project`; not empty.
    pub label: String,
    /// The tenant's value, e.g. the Keystone project id; not empty.
    pub value: String,
    /// What to do with a series that already carries the label with another value.
    pub on_conflict: OnConflict,
    /// Labels removed from every series as well (none by default).
    pub extra_labels_to_strip: Vec<String>,
}

impl Stamp {
    /// A stamp that overwrites claimed values and strips nothing else.
    pub fn new(label: impl Into<String>, value: impl Into<String>) -> Stamp {
        Stamp {
            label: label.into(),
            value: value.into(),
            on_conflict: OnConflict::Overwrite,
            extra_labels_to_strip: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnConflict {
    /// The series' own value is replaced by the tenant's.
    Overwrite,
    /// The request is refused (400), naming the series.
    Reject,
}

/// Whose labels the request's series get.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Tenancy {
    /// Every series gets the tenant label.
    Stamp(Stamp),
    /// Labels pass unchanged (credentials allowed to write any tenant's data).
    Unrestricted,
}

/// What happens to 1.0's metric family metadata (`WriteRequest.metadata`): it names metric
/// families, not series, so it carries no tenant label. 2.0's metadata belongs to a series and
/// is always kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetadataPolicy {
    Forward,
    Drop,
}

/// How [`super::enforce`] rewrites a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    pub tenancy: Tenancy,
    pub metadata: MetadataPolicy,
}

/// What [`super::enforce`] did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Enforced {
    /// Series in the request.
    pub series: usize,
    /// Series whose own, different value of the tenant label was overwritten.
    pub overwritten: usize,
    /// 1.0 metadata entries removed.
    pub metadata_dropped: usize,
}

/// A label list's names and values.
trait Resolve<T> {
    fn name<'a>(&'a self, item: &'a T) -> &'a str;
    fn value<'a>(&'a self, item: &'a T) -> &'a str;
}

/// 1.0: the labels are strings.
struct Strings;

impl Resolve<v1::Label> for Strings {
    fn name<'a>(&'a self, l: &'a v1::Label) -> &'a str {
        &l.name
    }
    fn value<'a>(&'a self, l: &'a v1::Label) -> &'a str {
        &l.value
    }
}

/// 2.0: name and value refs into the symbols table (checked to be in it beforehand).
struct Symbols<'s>(&'s [String]);

impl Resolve<[u32; 2]> for Symbols<'_> {
    fn name<'a>(&'a self, p: &'a [u32; 2]) -> &'a str {
        v2::symbol(self.0, p[0]).unwrap_or_default()
    }
    fn value<'a>(&'a self, p: &'a [u32; 2]) -> &'a str {
        v2::symbol(self.0, p[1]).unwrap_or_default()
    }
}

enum Problem {
    /// The series claims this other value of the tenant label.
    Conflict(String),
    /// Two labels have this name.
    Duplicate(String),
}

/// Stamps one series' labels: removes the tenant label (an empty value counts as absent, as
/// in Prometheus) and the extra labels, sorts by name if needed, refuses duplicate names, and
/// inserts `tenant` in its place. Says whether another value was overwritten. With
/// [`OnConflict::Reject`] a conflict returns before anything is changed.
fn stamp_labels<T, R: Resolve<T>>(
    labels: &mut Vec<T>,
    r: &R,
    stamp: &Stamp,
    tenant: impl FnOnce() -> T,
) -> Result<bool, Problem> {
    let claimed = labels
        .iter()
        .find(|l| r.name(l) == stamp.label && !r.value(l).is_empty() && r.value(l) != stamp.value)
        .map(|l| r.value(l).to_string());
    if let (Some(v), OnConflict::Reject) = (&claimed, stamp.on_conflict) {
        return Err(Problem::Conflict(v.clone()));
    }
    labels.retain(|l| {
        let n = r.name(l);
        n != stamp.label && !stamp.extra_labels_to_strip.iter().any(|s| s == n)
    });
    let sorted = |labels: &[T]| {
        labels.windows(2).all(|w| match w {
            [a, b] => r.name(a) <= r.name(b),
            _ => true,
        })
    };
    if !sorted(labels) {
        heapsort(labels, |a, b| r.name(a) < r.name(b));
    }
    let duplicate = labels.windows(2).find_map(|w| match w {
        [a, b] if r.name(a) == r.name(b) => Some(r.name(a).to_string()),
        _ => None,
    });
    if let Some(name) = duplicate {
        return Err(Problem::Duplicate(name));
    }
    let at = labels.partition_point(|l| r.name(l) < stamp.label.as_str());
    labels.insert(at, tenant());
    Ok(claimed.is_some())
}

fn problem_error<'a>(
    problem: Problem,
    labels: &mut dyn Iterator<Item = (&'a str, &'a str)>,
    stamp: &Stamp,
) -> WriteError {
    match problem {
        Problem::Conflict(claimed) => WriteError::conflict(format!(
            "series {} has {}=\"{}\", but these credentials write only {}=\"{}\": remove the label \
             from the series (it is added)",
            print_labels(labels),
            print_name(&stamp.label),
            escape(&truncate(&claimed, 80)),
            print_name(&stamp.label),
            escape(&stamp.value)
        )),
        Problem::Duplicate(name) => WriteError::invalid(format!(
            "series {} has two labels named {}",
            print_labels(labels),
            print_name(&truncate(&name, 60))
        )),
    }
}

/// Applies `policy` to a decoded request (see [`super::enforce`]).
pub(super) fn apply(decoded: &mut Decoded, policy: &Policy) -> Result<Enforced, WriteError> {
    let mut done = Enforced {
        series: decoded.series_count(),
        ..Enforced::default()
    };
    if let (Decoded::V1(req), MetadataPolicy::Drop) = (&mut *decoded, policy.metadata) {
        done.metadata_dropped = req.metadata.len();
        req.metadata.clear();
    }
    let Tenancy::Stamp(stamp) = &policy.tenancy else {
        return Ok(done);
    };
    if stamp.label.is_empty() || stamp.value.is_empty() {
        return Err(WriteError::internal(
            "the tenant label or its value is empty",
        ));
    }
    match decoded {
        Decoded::V1(req) => {
            for series in &mut req.timeseries {
                let tenant = || v1::Label::new(stamp.label.as_str(), stamp.value.as_str());
                match stamp_labels(&mut series.labels, &Strings, stamp, tenant) {
                    Ok(overwritten) => done.overwritten += usize::from(overwritten),
                    Err(p) => {
                        let mut labels = series
                            .labels
                            .iter()
                            .map(|l| (l.name.as_str(), l.value.as_str()));
                        return Err(problem_error(p, &mut labels, stamp));
                    }
                }
            }
        }
        Decoded::V2(req) => done.overwritten = stamp_v2(req, stamp)?,
    }
    Ok(done)
}

/// The index of `s` in the symbols table, added at the end if it is not there yet.
fn intern(symbols: &mut Vec<String>, s: &str) -> Result<u32, WriteError> {
    let i = match symbols.iter().position(|x| x == s) {
        Some(i) => i,
        None => {
            symbols.push(s.to_string());
            symbols.len() - 1
        }
    };
    u32::try_from(i).map_err(|_| WriteError::too_large("the symbols table is full"))
}

fn stamp_v2(req: &mut v2::Request, stamp: &Stamp) -> Result<usize, WriteError> {
    if req.timeseries.is_empty() {
        return Ok(0);
    }
    // Refs are checked against the table as it came, before the tenant's strings join it.
    let known = req.symbols.len();
    if req.symbols.is_empty() {
        req.symbols.push(String::new());
    }
    let tenant = [
        intern(&mut req.symbols, &stamp.label)?,
        intern(&mut req.symbols, &stamp.value)?,
    ];
    let symbols = Symbols(&req.symbols);
    let mut overwritten = 0;
    let mut pairs: Vec<[u32; 2]> = Vec::new();
    for (i, series) in req.timeseries.iter_mut().enumerate() {
        let refs = &series.labels_refs;
        if !refs.len().is_multiple_of(2)
            || refs
                .iter()
                .any(|&r| usize::try_from(r).map_or(true, |r| r >= known))
        {
            return Err(super::limits::bad_refs(known, i, series));
        }
        pairs.clear();
        pairs.extend(series.labels_refs.chunks_exact(2).filter_map(|c| match *c {
            [n, v] => Some([n, v]),
            _ => None,
        }));
        match stamp_labels(&mut pairs, &symbols, stamp, || tenant) {
            Ok(o) => overwritten += usize::from(o),
            Err(p) => {
                let mut labels = pairs.iter().map(|p| (symbols.name(p), symbols.value(p)));
                return Err(problem_error(p, &mut labels, stamp));
            }
        }
        series.labels_refs.clear();
        series.labels_refs.extend(pairs.iter().flatten());
    }
    Ok(overwritten)
}

/// At most `max` bytes of `s` (cut at a character boundary), with `…` if it was cut.
pub(crate) fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", s.get(..end).unwrap_or_default())
}

/// A value as a double-quoted Prometheus string body (the same escapes as the PromQL printer's).
fn escape(s: &str) -> String {
    crate::enforce::promql::escape(s)
}

/// Sorts `v` by `less`, in place: a heapsort, small in code (one series' labels are sorted
/// already but for broken senders; this runs only for those).
fn heapsort<T>(v: &mut [T], less: impl Fn(&T, &T) -> bool) {
    let sift_down = |v: &mut [T], mut node: usize| loop {
        let mut child = 2 * node + 1;
        let (Some(first), second) = (v.get(child), v.get(child + 1)) else {
            break;
        };
        if second.is_some_and(|second| less(first, second)) {
            child += 1;
        }
        match (v.get(node), v.get(child)) {
            (Some(n), Some(c)) if less(n, c) => v.swap(node, child),
            _ => break,
        }
        node = child;
    };
    for node in (0..v.len() / 2).rev() {
        sift_down(v, node);
    }
    for end in (1..v.len()).rev() {
        v.swap(0, end);
        if let Some(heap) = v.get_mut(..end) {
            sift_down(heap, 0);
        }
    }
}

/// A label name as Prometheus prints it: bare if it is a classic name, quoted otherwise.
fn print_name(name: &str) -> String {
    let mut chars = name.chars();
    let classic = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
    if classic {
        name.to_string()
    } else {
        format!("\"{}\"", escape(name))
    }
}

/// Longest printed label set in an error message.
const MAX_PRINTED: usize = 300;

/// A label set as Prometheus prints it, `{__name__="up", job="a"}`, cut after about
/// [`MAX_PRINTED`] bytes.
pub(crate) fn print_labels<'a>(labels: &mut dyn Iterator<Item = (&'a str, &'a str)>) -> String {
    let mut out = String::from("{");
    for (i, (name, value)) in labels.enumerate() {
        if out.len() > MAX_PRINTED {
            out.push_str(", …");
            break;
        }
        if i > 0 {
            out.push_str(", ");
        }
        out.push_str(&print_name(&truncate(name, 100)));
        out.push_str("=\"");
        out.push_str(&escape(&truncate(value, 100)));
        out.push('"');
    }
    out.push('}');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> Vec<v1::Label> {
        pairs.iter().map(|(n, v)| v1::Label::new(*n, *v)).collect()
    }

    fn stamp_v1(input: &[(&str, &str)], stamp: &Stamp) -> Result<(Vec<v1::Label>, bool), Problem> {
        let mut l = labels(input);
        let o = stamp_labels(&mut l, &Strings, stamp, || {
            v1::Label::new(stamp.label.as_str(), stamp.value.as_str())
        })?;
        Ok((l, o))
    }

    #[test]
    fn stamps_sorted_and_unique() {
        let s = Stamp::new("project", "abc");
        type Case<'a> = (&'a [(&'a str, &'a str)], &'a [(&'a str, &'a str)], bool);
        let cases: &[Case] = &[
            (
                &[("__name__", "up"), ("job", "a")],
                &[("__name__", "up"), ("job", "a"), ("project", "abc")],
                false,
            ),
            (
                &[("__name__", "up"), ("zone", "a")],
                &[("__name__", "up"), ("project", "abc"), ("zone", "a")],
                false,
            ),
            (
                &[("zone", "a"), ("__name__", "up")],
                &[("__name__", "up"), ("project", "abc"), ("zone", "a")],
                false,
            ),
            (
                &[("__name__", "up"), ("project", "other")],
                &[("__name__", "up"), ("project", "abc")],
                true,
            ),
            (
                &[
                    ("project", "x"),
                    ("__name__", "up"),
                    ("project", "abc"),
                    ("project", ""),
                ],
                &[("__name__", "up"), ("project", "abc")],
                true,
            ),
            (
                &[("__name__", "up"), ("project", "abc")],
                &[("__name__", "up"), ("project", "abc")],
                false,
            ),
            (
                &[("__name__", "up"), ("project", "")],
                &[("__name__", "up"), ("project", "abc")],
                false,
            ),
            (&[], &[("project", "abc")], false),
            (
                &[("projecta", "1"), ("project_id", "2")],
                &[("project", "abc"), ("project_id", "2"), ("projecta", "1")],
                false,
            ),
        ];
        for (input, want, overwritten) in cases {
            let (got, o) = stamp_v1(input, &s).ok().unwrap();
            assert_eq!(got, labels(want), "{input:?}");
            assert_eq!(o, *overwritten, "{input:?}");
        }
    }

    #[test]
    fn duplicates_refused() {
        let s = Stamp::new("project", "abc");
        let mut l = labels(&[("__name__", "up"), ("job", "a"), ("job", "b")]);
        let Err(Problem::Duplicate(name)) =
            stamp_labels(&mut l, &Strings, &s, || v1::Label::new("project", "abc"))
        else {
            panic!("duplicate accepted");
        };
        assert_eq!(name, "job");
    }

    #[test]
    fn reject_leaves_labels_alone() {
        let s = Stamp {
            on_conflict: OnConflict::Reject,
            ..Stamp::new("project", "abc")
        };
        let input = [("__name__", "up"), ("project", "other")];
        let mut l = labels(&input);
        let Err(Problem::Conflict(v)) =
            stamp_labels(&mut l, &Strings, &s, || v1::Label::new("project", "abc"))
        else {
            panic!("conflict accepted");
        };
        assert_eq!(v, "other");
        assert_eq!(l, labels(&input));
        // The same value, or an empty one, is no conflict.
        assert!(stamp_v1(&[("project", "abc")], &s).is_ok());
        assert!(stamp_v1(&[("project", "")], &s).is_ok());
    }

    #[test]
    fn strips_extra_labels() {
        let s = Stamp {
            extra_labels_to_strip: vec!["tenant_id".into()],
            ..Stamp::new("project", "abc")
        };
        let (got, _) = stamp_v1(&[("__name__", "up"), ("tenant_id", "t")], &s)
            .ok()
            .unwrap();
        assert_eq!(got, labels(&[("__name__", "up"), ("project", "abc")]));
    }

    #[test]
    fn heapsort_sorts() {
        for n in 0..40usize {
            let mut v: Vec<usize> = (0..n).map(|i| (i * 7919 + 13) % (n / 2 + 1)).collect();
            let mut want = v.clone();
            want.sort();
            heapsort(&mut v, |a, b| a < b);
            assert_eq!(v, want);
        }
    }

    #[test]
    fn printing() {
        let l = [("__name__", "up"), ("a", "b\"c\\d\ne"), ("weird.name", "x")];
        assert_eq!(
            print_labels(&mut l.into_iter()),
            r#"{__name__="up", a="b\"c\\d\ne", "weird.name"="x"}"#
        );
        assert_eq!(print_labels(&mut std::iter::empty()), "{}");
        assert_eq!(escape("a\u{1}\t"), "a\\u0001\\t");
        let long: Vec<(String, String)> = (0..100)
            .map(|i| (format!("label_{i}"), "v".repeat(50)))
            .collect();
        let printed = print_labels(&mut long.iter().map(|(n, v)| (n.as_str(), v.as_str())));
        assert!(printed.len() < MAX_PRINTED + 200, "{}", printed.len());
        assert!(printed.ends_with(", …}"), "{printed}");
        assert_eq!(truncate("héllo", 2), "h…");
        assert_eq!(truncate("héllo", 3), "hé…");
        assert_eq!(truncate("hé", 3), "hé");
    }
}
