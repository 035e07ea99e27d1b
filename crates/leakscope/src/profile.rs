//! Heap profiles in pprof's format, the one `go tool pprof` reads: taking one
//! from jemalloc, making it name the program's own functions, and reading it
//! back (for tests, reports and profile diffs).
//!
//! * [`heap_profile`] — jemalloc's sampled in-use heap as a gzipped pprof
//!   protobuf, with the allocator's own frames trimmed off every stack, ready
//!   to serve at `/debug/pprof/heap`. [`raw_heap_profile`] is the same dump
//!   untrimmed, as `jemalloc_pprof` produces it; [`heap_flamegraph`] an SVG.
//! * [`decode`], [`encode`] and the [`proto`] types — the pprof format itself.
//! * [`trim_allocator_frames`] — what makes the served profile usable: without it,
//!   every stack starts inside jemalloc (`prof_backtrace_impl`,
//!   `_rjem_je_malloc_default`, …), so `go tool pprof -top` charges all memory
//!   to the profiler's backtrace function instead of the code that allocated.
//! * [`top`] and [`top_diff`] — pprof's `-top` and `-base` views in code.
//!
//! ```
//! use leakscope::profile::{decode, encode, proto::Profile, top, trim_allocator_frames};
//!
//! // Two stacks, leaf first, as jemalloc records them.
//! let mut profile = Profile::from_stacks(
//!     ("inuse_space", "bytes"),
//!     &[
//!         (&["prof_backtrace_impl", "malloc", "alloc::alloc::alloc", "app::cache_insert", "main"], 5 << 20),
//!         (&["prof_backtrace_impl", "malloc", "app::parse", "main"], 1 << 20),
//!     ],
//! );
//! assert_eq!(top(&profile, 0)[0].function, "prof_backtrace_impl");
//!
//! trim_allocator_frames(&mut profile);
//! let served = decode(&encode(&profile)).unwrap();
//! let first = &top(&served, 0)[0];
//! assert_eq!((first.function.as_str(), first.flat), ("app::cache_insert", 5 << 20));
//! ```
//!
//! Heap profiling needs jemalloc as the global allocator *and* its profiler
//! switched on when the process starts, which a binary does by exporting
//! jemalloc's configuration string:
//!
//! ```text
//! #[unsafe(export_name = "malloc_conf")]
//! pub static malloc_conf: &[u8] = b"prof:true,prof_active:true,lg_prof_sample:19\0";
//! ```
//!
//! `lg_prof_sample:19` samples about one allocation per 512 KiB allocated
//! (jemalloc's default): cheap enough for production, and each sample is
//! scaled up so the totals estimate the whole heap.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::io::{Read, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use prost::Message;

/// The pprof protobuf messages (`perftools.profiles`, from pprof's
/// `profile.proto`): a profile is samples of values (bytes, counts) at
/// stacks of locations, each location one or more lines in functions, all
/// names interned in `string_table`.
#[allow(missing_docs, clippy::derive_partial_eq_without_eq)]
pub mod proto {
    #[derive(Clone, PartialEq, ::prost::Message)]
    pub struct Profile {
        #[prost(message, repeated, tag = "1")]
        pub sample_type: Vec<ValueType>,
        #[prost(message, repeated, tag = "2")]
        pub sample: Vec<Sample>,
        #[prost(message, repeated, tag = "3")]
        pub mapping: Vec<Mapping>,
        #[prost(message, repeated, tag = "4")]
        pub location: Vec<Location>,
        #[prost(message, repeated, tag = "5")]
        pub function: Vec<Function>,
        #[prost(string, repeated, tag = "6")]
        pub string_table: Vec<String>,
        #[prost(int64, tag = "7")]
        pub drop_frames: i64,
        #[prost(int64, tag = "8")]
        pub keep_frames: i64,
        #[prost(int64, tag = "9")]
        pub time_nanos: i64,
        #[prost(int64, tag = "10")]
        pub duration_nanos: i64,
        #[prost(message, optional, tag = "11")]
        pub period_type: Option<ValueType>,
        #[prost(int64, tag = "12")]
        pub period: i64,
        #[prost(int64, repeated, tag = "13")]
        pub comment: Vec<i64>,
        #[prost(int64, tag = "14")]
        pub default_sample_type: i64,
    }

    #[derive(Clone, PartialEq, ::prost::Message)]
    pub struct ValueType {
        #[prost(int64, tag = "1")]
        pub r#type: i64,
        #[prost(int64, tag = "2")]
        pub unit: i64,
    }

    /// One stack and its values. `location_id[0]` is the leaf (the frame
    /// that allocated), the last one the root.
    #[derive(Clone, PartialEq, ::prost::Message)]
    pub struct Sample {
        #[prost(uint64, repeated, tag = "1")]
        pub location_id: Vec<u64>,
        #[prost(int64, repeated, tag = "2")]
        pub value: Vec<i64>,
        #[prost(message, repeated, tag = "3")]
        pub label: Vec<Label>,
    }

    #[derive(Clone, PartialEq, ::prost::Message)]
    pub struct Label {
        #[prost(int64, tag = "1")]
        pub key: i64,
        #[prost(int64, tag = "2")]
        pub str: i64,
        #[prost(int64, tag = "3")]
        pub num: i64,
        #[prost(int64, tag = "4")]
        pub num_unit: i64,
    }

    #[derive(Clone, PartialEq, ::prost::Message)]
    pub struct Mapping {
        #[prost(uint64, tag = "1")]
        pub id: u64,
        #[prost(uint64, tag = "2")]
        pub memory_start: u64,
        #[prost(uint64, tag = "3")]
        pub memory_limit: u64,
        #[prost(uint64, tag = "4")]
        pub file_offset: u64,
        #[prost(int64, tag = "5")]
        pub filename: i64,
        #[prost(int64, tag = "6")]
        pub build_id: i64,
        #[prost(bool, tag = "7")]
        pub has_functions: bool,
        #[prost(bool, tag = "8")]
        pub has_filenames: bool,
        #[prost(bool, tag = "9")]
        pub has_line_numbers: bool,
        #[prost(bool, tag = "10")]
        pub has_inline_frames: bool,
    }

    /// An address in the program. `line[0]` is the innermost function
    /// (inlined into the next line's function, and so on).
    #[derive(Clone, PartialEq, ::prost::Message)]
    pub struct Location {
        #[prost(uint64, tag = "1")]
        pub id: u64,
        #[prost(uint64, tag = "2")]
        pub mapping_id: u64,
        #[prost(uint64, tag = "3")]
        pub address: u64,
        #[prost(message, repeated, tag = "4")]
        pub line: Vec<Line>,
        #[prost(bool, tag = "5")]
        pub is_folded: bool,
    }

    #[derive(Clone, PartialEq, ::prost::Message)]
    pub struct Line {
        #[prost(uint64, tag = "1")]
        pub function_id: u64,
        #[prost(int64, tag = "2")]
        pub line: i64,
    }

    #[derive(Clone, PartialEq, ::prost::Message)]
    pub struct Function {
        #[prost(uint64, tag = "1")]
        pub id: u64,
        #[prost(int64, tag = "2")]
        pub name: i64,
        #[prost(int64, tag = "3")]
        pub system_name: i64,
        #[prost(int64, tag = "4")]
        pub filename: i64,
        #[prost(int64, tag = "5")]
        pub start_line: i64,
    }
}

use proto::{Function, Line, Location, Profile, Sample, ValueType};

/// Why a profile could not be taken or read.
#[derive(Debug)]
pub enum ProfileError {
    /// jemalloc's profiler was not switched on at start-up (no `prof:true`
    /// in the binary's `malloc_conf`), or jemalloc is not the allocator.
    NotEnabled,
    /// The profiler is compiled in and enabled but not active right now.
    NotActive,
    /// jemalloc could not write its dump, or it could not be converted.
    Dump(String),
    /// The bytes are not a (gzipped) pprof protobuf.
    Decode(String),
}

impl fmt::Display for ProfileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotEnabled => write!(
                f,
                "heap profiling is not enabled: the binary must use jemalloc and export \
                 malloc_conf with \"prof:true\" (named _rjem_malloc_conf when tikv-jemallocator \
                 lacks its unprefixed_malloc_on_supported_platforms feature, where a malloc_conf \
                 is silently ignored)"
            ),
            Self::NotActive => write!(f, "heap profiling is enabled but not active"),
            Self::Dump(reason) => write!(f, "jemalloc heap dump failed: {reason}"),
            Self::Decode(reason) => write!(f, "not a pprof profile: {reason}"),
        }
    }
}

impl std::error::Error for ProfileError {}

/// The most a gzipped profile may expand to (256 MiB): a real heap profile
/// is a few megabytes; a gzip bomb would otherwise take the machine's memory.
pub const MAX_DECOMPRESSED_BYTES: u64 = 256 << 20;

/// Reads a pprof profile, gzipped (as served and saved) or not. Empty input,
/// bytes that are not a profile, and gzip that expands past
/// [`MAX_DECOMPRESSED_BYTES`] are errors that say which.
pub fn decode(bytes: &[u8]) -> Result<Profile, ProfileError> {
    if bytes.is_empty() {
        return Err(ProfileError::Decode("the input is empty".to_owned()));
    }
    let mut plain = Vec::new();
    let protobuf = if bytes.starts_with(&[0x1f, 0x8b]) {
        // Read one byte past the cap to tell "exactly the cap" from "more".
        flate2::read::GzDecoder::new(bytes)
            .take(MAX_DECOMPRESSED_BYTES + 1)
            .read_to_end(&mut plain)
            .map_err(|error| ProfileError::Decode(format!("gzip: {error}")))?;
        if plain.len() as u64 > MAX_DECOMPRESSED_BYTES {
            return Err(ProfileError::Decode(format!(
                "gzip expands past {} MiB: not a heap profile",
                MAX_DECOMPRESSED_BYTES >> 20
            )));
        }
        &plain[..]
    } else {
        bytes
    };
    Profile::decode(protobuf).map_err(|error| ProfileError::Decode(error.to_string()))
}

/// Writes a profile the way pprof expects it on disk and over HTTP: a gzipped
/// protobuf.
pub fn encode(profile: &Profile) -> Vec<u8> {
    let mut gzip = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gzip.write_all(&profile.encode_to_vec())
        .expect("writing to a Vec cannot fail");
    gzip.finish().expect("writing to a Vec cannot fail")
}

/// C functions of jemalloc and the C allocation API. A leaf frame whose name
/// starts with one of these (and is not a Rust path) is the allocator's.
const C_ALLOCATOR_PREFIXES: [&str; 17] = [
    "_rjem_",
    "je_",
    "prof_",
    "imalloc",
    "ialloc",
    "iralloc",
    "arena_",
    "tcache_",
    "malloc",
    "calloc",
    "realloc",
    "posix_memalign",
    "aligned_alloc",
    "memalign",
    "valloc",
    "mallocx",
    "rallocx",
];

/// Rust paths that only move an allocation request along: the global
/// allocator shims, liballoc's containers, and the std hash map's table.
/// Their callers are the code that decided to allocate.
const RUST_ALLOCATOR_PATHS: [&str; 12] = [
    "__rust_",
    "__rdl_",
    "__rg_",
    "__rustc::",
    "alloc::",
    "core::alloc::",
    "std::alloc::",
    "tikv_jemallocator::",
    "leakscope::alloc::",
    "<leakscope::alloc::",
    "hashbrown::",
    "std::collections::hash::",
];

/// Whether a frame named `function` belongs to the allocator (jemalloc, the
/// C allocation functions, Rust's global-allocator shims and the std
/// collections' growth paths) rather than to the program that asked for
/// memory.
///
/// Trait implementations count by the trait's or the type's path, so
/// `<u8 as alloc::vec::spec_from_elem::SpecFromElem>::from_elem` (what
/// `vec![0; n]` calls) and `<alloc::string::String as core::clone::Clone>::clone`
/// are allocator frames, and `<app::Cache as app::Store>::insert` is not.
pub fn is_allocator_frame(function: &str) -> bool {
    if !function.contains("::") {
        return C_ALLOCATOR_PREFIXES
            .iter()
            .chain(&RUST_ALLOCATOR_PATHS[..3])
            .any(|prefix| function.starts_with(prefix));
    }
    // `<Type as Trait>::method`: the frame is the allocator's if either path is.
    let paths: Vec<&str> = match function.strip_prefix('<') {
        Some(qualified) => qualified
            .split(">::")
            .next()
            .unwrap_or(qualified)
            .split(" as ")
            .map(|path| path.trim_start_matches(['<', '&', '*']))
            .collect(),
        None => vec![function],
    };
    paths.iter().any(|path| {
        RUST_ALLOCATOR_PATHS
            .iter()
            .any(|prefix| path.starts_with(prefix))
    })
}

/// Source files of the allocator: Rust's liballoc and `std::alloc`, the std
/// hash map (hashbrown), tikv-jemallocator and jemalloc's C sources (built
/// inside tikv-jemalloc-sys). Inlined frames often have only a short name
/// (`alloc_zeroed`, `from_elem<…>`), so their file tells whose they are.
const ALLOCATOR_SOURCES: [&str; 7] = [
    "/library/alloc/",
    "/library/core/src/alloc/",
    "/library/std/src/alloc.rs",
    "/library/std/src/collections/hash/",
    "/hashbrown-",
    "tikv-jemallocator-",
    "tikv-jemalloc-sys-",
];

/// Whether `file` (a frame's source path) belongs to the allocator: see
/// [`is_allocator_frame`] for what counts.
pub fn is_allocator_source(file: &str) -> bool {
    ALLOCATOR_SOURCES.iter().any(|marker| file.contains(marker))
}

/// Removes the allocator's frames from the leaf end of every sample's stack,
/// so each sample is charged to the function that asked for the memory.
/// Returns how many frames (inlined ones included) were removed.
///
/// A frame is the allocator's by its name ([`is_allocator_frame`]) or by its
/// source file ([`is_allocator_source`]). Only the leaf end is trimmed: an allocator-looking frame further up (a
/// closure inside a `Vec` method, say) stays. Frames without a symbol stop
/// the trimming, and a stack that would be left empty is kept whole.
pub fn trim_allocator_frames(profile: &mut Profile) -> usize {
    let allocator_functions: HashSet<u64> = profile
        .function
        .iter()
        .filter(|function| {
            is_allocator_frame(string(profile, function.name))
                || is_allocator_source(string(profile, function.filename))
        })
        .map(|function| function.id)
        .collect();
    let is_allocator = |line: &Line| allocator_functions.contains(&line.function_id);
    let locations: HashMap<u64, Location> = profile
        .location
        .iter()
        .map(|location| (location.id, location.clone()))
        .collect();
    let mut next_id = locations.keys().max().copied().unwrap_or(0) + 1;
    // (original location, inlined lines kept) → the trimmed copy's id
    let mut trimmed_copies: HashMap<(u64, usize), u64> = HashMap::new();
    let mut new_locations = Vec::new();
    let mut removed_frames = 0;

    for sample in &mut profile.sample {
        let mut dropped_locations = 0;
        let mut partial: Option<(u64, usize)> = None;
        let mut frames_here = 0;
        for id in &sample.location_id {
            let Some(location) = locations.get(id) else {
                break;
            };
            let allocator_lines = location.line.iter().take_while(|l| is_allocator(l)).count();
            frames_here += allocator_lines;
            if location.line.is_empty() || allocator_lines < location.line.len() {
                if allocator_lines > 0 {
                    partial = Some((*id, location.line.len() - allocator_lines));
                }
                break;
            }
            dropped_locations += 1;
        }
        if dropped_locations == sample.location_id.len() {
            continue; // nothing of the program's own would be left
        }
        if let Some((id, kept_lines)) = partial {
            let copy_id = *trimmed_copies.entry((id, kept_lines)).or_insert_with(|| {
                let mut copy = locations[&id].clone();
                copy.line.drain(..copy.line.len() - kept_lines);
                copy.id = next_id;
                next_id += 1;
                new_locations.push(copy);
                next_id - 1
            });
            sample.location_id[dropped_locations] = copy_id;
        }
        sample.location_id.drain(..dropped_locations);
        removed_frames += frames_here;
    }
    profile.location.extend(new_locations);
    drop_unused_locations(profile);
    removed_frames
}

/// Frames of the in-process symbolizer: the `backtrace` crate, which
/// `jemalloc_pprof` uses to name addresses, and the DWARF readers it keeps
/// parsed in memory for the life of the process.
const SYMBOLIZER_PATHS: [&str; 3] = ["backtrace::symbolize::", "addr2line::", "gimli::"];

/// Removes the samples the profiler's own symbolizer allocated, and notes in
/// the profile's comments how much they held. Returns that amount (value
/// `sample_index`).
///
/// The first profile a process serves makes `backtrace` parse the
/// executable's debug information and keep it: tens of MiB. Left in, that
/// cache is the largest thing in every later heap profile, and `-top` blames
/// the profiler instead of the program.
///
/// The profiles [`take_heap`] serves never sample the profiler's own work
/// ([`profiler_work`]); this filter by frame name remains for symbolizer
/// allocations made elsewhere (a panic's backtrace, say). It recognises
/// full paths only, which a release build's inlined frames lack.
pub fn drop_symbolizer_samples(profile: &mut Profile, sample_index: usize) -> i64 {
    let symbolizer_functions: HashSet<u64> = profile
        .function
        .iter()
        .filter(|function| {
            let name = string(profile, function.name).trim_start_matches('<');
            SYMBOLIZER_PATHS.iter().any(|path| name.starts_with(path))
        })
        .map(|function| function.id)
        .collect();
    let symbolizer_locations: HashSet<u64> = profile
        .location
        .iter()
        .filter(|location| {
            location
                .line
                .iter()
                .any(|line| symbolizer_functions.contains(&line.function_id))
        })
        .map(|location| location.id)
        .collect();
    let mut dropped = 0;
    profile.sample.retain(|sample| {
        let by_symbolizer = sample
            .location_id
            .iter()
            .any(|id| symbolizer_locations.contains(id));
        if by_symbolizer {
            dropped += sample.value.get(sample_index).copied().unwrap_or(0);
        }
        !by_symbolizer
    });
    if dropped > 0 {
        profile.string_table.push(format!(
            "leakscope: {dropped} bytes held by the profiler's symbolizer (backtrace's debug-info \
             cache) left out"
        ));
        profile.comment.push(profile.string_table.len() as i64 - 1);
        drop_unused_locations(profile);
    }
    dropped
}

/// Marks every mapping as already symbolized, with file names, lines and
/// inlined frames, as the in-process symbolizer made it.
///
/// `go tool pprof` re-symbolizes a profile whose mappings do not say so, when
/// it finds the binary on the local disk — with `addr2line`, which names no
/// function in a binary built with `debug = "line-tables-only"`, so the
/// frames turn into `[binary]`.
pub fn mark_symbolized(profile: &mut Profile) {
    for mapping in &mut profile.mapping {
        mapping.has_functions = true;
        mapping.has_filenames = true;
        mapping.has_line_numbers = true;
        mapping.has_inline_frames = true;
    }
}

fn drop_unused_locations(profile: &mut Profile) {
    let used: HashSet<u64> = profile
        .sample
        .iter()
        .flat_map(|sample| sample.location_id.iter().copied())
        .collect();
    profile
        .location
        .retain(|location| used.contains(&location.id));
}

fn string(profile: &Profile, index: i64) -> &str {
    usize::try_from(index)
        .ok()
        .and_then(|index| profile.string_table.get(index))
        .map_or("", String::as_str)
}

/// One function's share of a profile's values, as a line of `pprof -top`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FunctionCost {
    /// The function's name (or `0x…` for an address without a symbol).
    pub function: String,
    /// Value of the samples whose leaf (innermost frame) is this function.
    pub flat: i64,
    /// Value of the samples with this function anywhere on the stack.
    pub cum: i64,
}

/// The functions of a profile by flat value, largest first (cum, then name,
/// break ties): what `go tool pprof -top` prints. `sample_index` picks the
/// value (0 for `inuse_space` in a jemalloc heap profile).
pub fn top(profile: &Profile, sample_index: usize) -> Vec<FunctionCost> {
    let mut totals: BTreeMap<String, (i64, i64)> = BTreeMap::new();
    for (stack, value) in stacks(profile, sample_index) {
        let mut seen = HashSet::new();
        for (depth, function) in stack.iter().enumerate() {
            let entry = totals.entry(function.clone()).or_default();
            if depth == 0 {
                entry.0 += value;
            }
            if seen.insert(function) {
                entry.1 += value;
            }
        }
    }
    let mut costs: Vec<FunctionCost> = totals
        .into_iter()
        .map(|(function, (flat, cum))| FunctionCost {
            function,
            flat,
            cum,
        })
        .collect();
    costs.sort_by(|a, b| {
        (b.flat, b.cum)
            .cmp(&(a.flat, a.cum))
            .then_with(|| a.function.cmp(&b.function))
    });
    costs
}

/// What grew between two profiles, per function (`current − base`), largest
/// flat growth first: `go tool pprof -top -base base.pb.gz current.pb.gz`.
pub fn top_diff(base: &Profile, current: &Profile, sample_index: usize) -> Vec<FunctionCost> {
    let mut totals: BTreeMap<String, (i64, i64)> = BTreeMap::new();
    for (sign, profile) in [(-1, base), (1, current)] {
        for cost in top(profile, sample_index) {
            let entry = totals.entry(cost.function).or_default();
            entry.0 += sign * cost.flat;
            entry.1 += sign * cost.cum;
        }
    }
    let mut costs: Vec<FunctionCost> = totals
        .into_iter()
        .map(|(function, (flat, cum))| FunctionCost {
            function,
            flat,
            cum,
        })
        .collect();
    costs.sort_by(|a, b| {
        (b.flat, b.cum)
            .cmp(&(a.flat, a.cum))
            .then_with(|| a.function.cmp(&b.function))
    });
    costs
}

/// Each sample as its stack of function names (leaf first, inlined frames
/// expanded) and its value at `sample_index`.
pub fn stacks(profile: &Profile, sample_index: usize) -> Vec<(Vec<String>, i64)> {
    stacks_with_files(profile, sample_index)
        .into_iter()
        .map(|(stack, value)| (stack.into_iter().map(|(name, _)| name).collect(), value))
        .collect()
}

/// [`stacks`] with each frame's source file beside its name (empty when the
/// profile does not say): the matcher also recognises inlined frames by file.
pub(crate) fn stacks_with_files(
    profile: &Profile,
    sample_index: usize,
) -> Vec<(Vec<(String, String)>, i64)> {
    let functions: HashMap<u64, (&str, &str)> = profile
        .function
        .iter()
        .map(|function| {
            let names = (
                string(profile, function.name),
                string(profile, function.filename),
            );
            (function.id, names)
        })
        .collect();
    let locations: HashMap<u64, &Location> = profile
        .location
        .iter()
        .map(|location| (location.id, location))
        .collect();
    let unknown = |name: String| (name, String::new());
    profile
        .sample
        .iter()
        .map(|sample| {
            let stack = sample
                .location_id
                .iter()
                .flat_map(|id| match locations.get(id) {
                    Some(location) if !location.line.is_empty() => location
                        .line
                        .iter()
                        .map(|line| match functions.get(&line.function_id) {
                            Some((name, file)) => (name.to_string(), file.to_string()),
                            None => unknown(format!("function#{}", line.function_id)),
                        })
                        .collect(),
                    Some(location) => vec![unknown(format!("{:#x}", location.address))],
                    None => vec![unknown(format!("location#{id}"))],
                })
                .collect();
            let value = sample.value.get(sample_index).copied().unwrap_or(0);
            (stack, value)
        })
        .collect()
}

/// The total of one value over all samples (the heap size a heap profile
/// estimates, for `inuse_space`).
pub fn total(profile: &Profile, sample_index: usize) -> i64 {
    profile
        .sample
        .iter()
        .filter_map(|sample| sample.value.get(sample_index))
        .sum()
}

impl Profile {
    /// Builds a profile from stacks of function names (leaf first) and their
    /// values, one value type. For examples, tests, and profiles that are not
    /// about machine addresses (tasks grouped by where they wait, say).
    pub fn from_stacks<S: AsRef<str>>(sample_type: (&str, &str), stacks: &[(&[S], i64)]) -> Self {
        let mut profile = Profile {
            string_table: vec![String::new()],
            ..Profile::default()
        };
        let mut strings: HashMap<String, i64> = HashMap::from([(String::new(), 0)]);
        let mut intern = |profile: &mut Profile, text: &str| -> i64 {
            *strings.entry(text.to_string()).or_insert_with(|| {
                profile.string_table.push(text.to_string());
                profile.string_table.len() as i64 - 1
            })
        };
        let value_type = ValueType {
            r#type: intern(&mut profile, sample_type.0),
            unit: intern(&mut profile, sample_type.1),
        };
        profile.sample_type = vec![value_type.clone()];
        profile.period_type = Some(value_type);
        let mut location_of: HashMap<String, u64> = HashMap::new();
        for (stack, value) in stacks {
            let mut location_id = Vec::with_capacity(stack.len());
            for name in stack.iter().map(AsRef::as_ref) {
                let id = match location_of.get(name) {
                    Some(id) => *id,
                    None => {
                        let id = profile.location.len() as u64 + 1;
                        let function_name = intern(&mut profile, name);
                        profile.function.push(Function {
                            id,
                            name: function_name,
                            system_name: function_name,
                            ..Function::default()
                        });
                        profile.location.push(Location {
                            id,
                            line: vec![Line {
                                function_id: id,
                                line: 0,
                            }],
                            ..Location::default()
                        });
                        location_of.insert(name.to_string(), id);
                        id
                    }
                };
                location_id.push(id);
            }
            profile.sample.push(Sample {
                location_id,
                value: vec![*value],
                label: Vec::new(),
            });
        }
        profile
    }
}

/// Whether jemalloc's heap profiler is on in this process (the binary
/// exported a `malloc_conf` with `prof:true`, and jemalloc is the allocator).
pub fn heap_profiling_enabled() -> bool {
    jemalloc_pprof::PROF_CTL.is_some()
}

/// Bytes the profiler's own work has left live so far: mostly the
/// symbolizer's debug-info cache, which the first profile or task dump
/// fills (tens of MiB for a large binary) and which stays for the life of
/// the process. Process-wide heap statistics count it; heap profiles do not
/// ([`profiler_work`]), so a monitor that sees the heap jump after the first
/// profile can subtract this.
pub fn profiler_retained_bytes() -> i64 {
    PROFILER_RETAINED_BYTES.load(Ordering::Relaxed)
}

static PROFILER_RETAINED_BYTES: AtomicI64 = AtomicI64::new(0);

/// Runs the profiler's own work (a dump and its symbolization) with
/// jemalloc's sampling switched off for the calling thread, so that none of
/// its allocations can enter a heap profile, whatever their frames are
/// called; adds what the work left live on this thread, apart from its
/// result, to [`profiler_retained_bytes`]. `result_bytes` tells what the
/// result holds, in [`usable_bytes`] of its allocations.
///
/// Recognising the symbolizer by its frame names fails in release builds:
/// with `debug = "line-tables-only"` its inlined frames are called `insert`,
/// `push` or `parse`. Its allocations are instead never sampled.
pub fn profiler_work<T>(work: impl FnOnce() -> T, result_bytes: impl FnOnce(&T) -> i64) -> T {
    unsampled(|| {
        let live_before = thread_live_bytes();
        let result = work();
        let left_live = thread_live_bytes() - live_before;
        let kept_by_profiler = left_live - result_bytes(&result);
        PROFILER_RETAINED_BYTES.fetch_add(kept_by_profiler, Ordering::Relaxed);
        result
    })
}

/// Runs `work` with jemalloc's sampling switched off for the calling thread:
/// what it allocates never appears in a heap profile.
pub fn unsampled<T>(work: impl FnOnce() -> T) -> T {
    // SAFETY: `thread.prof.active` is a readable and writable bool
    // (jemalloc(3)); both fail harmlessly when profiling is off.
    let was_active = unsafe { tikv_jemalloc_ctl::raw::read::<bool>(b"thread.prof.active\0") };
    if was_active == Ok(true) {
        let _ = unsafe { tikv_jemalloc_ctl::raw::write(b"thread.prof.active\0", false) };
    }
    let result = work();
    if was_active == Ok(true) {
        let _ = unsafe { tikv_jemalloc_ctl::raw::write(b"thread.prof.active\0", true) };
    }
    result
}

/// The bytes jemalloc counts for an allocation of `requested` bytes (its
/// size class), found by making one: what a `Vec` or `String` of that
/// capacity holds. 0 for 0 and without jemalloc.
pub fn usable_bytes(requested: usize) -> i64 {
    if requested == 0 {
        return 0;
    }
    let before = thread_live_bytes();
    let probe: Vec<u8> = std::hint::black_box(Vec::with_capacity(requested));
    let usable = thread_live_bytes() - before;
    drop(probe);
    usable
}

/// This thread's allocated minus freed bytes, from jemalloc's own counters
/// (0 when jemalloc is not the allocator).
fn thread_live_bytes() -> i64 {
    use tikv_jemalloc_ctl::thread;
    let read = || -> Option<i64> {
        let allocated = thread::allocatedp::read().ok()?.get();
        let deallocated = thread::deallocatedp::read().ok()?.get();
        Some(allocated as i64 - deallocated as i64)
    };
    read().unwrap_or(0)
}

/// Runs `work` on tokio's blocking pool: decoding, trimming, encoding and
/// symbolizing take milliseconds to seconds, too long for a runtime worker.
pub async fn off_runtime<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, ProfileError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|error| ProfileError::Dump(error.to_string()))
}

/// Which heap profile to take: the program's own memory, as served at
/// `/debug/pprof/heap`, or jemalloc_pprof's dump as it comes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeapView {
    /// The program's own memory ([`drop_symbolizer_samples`]), stacks
    /// starting at the program's frames ([`trim_allocator_frames`]), marked
    /// symbolized ([`mark_symbolized`]).
    Program,
    /// The dump untrimmed: every stack starts inside the allocator.
    Raw,
}

/// Takes a heap profile (sampled in-use bytes, `inuse_space`), entirely on
/// the blocking pool and with the profiler's own allocations unsampled
/// ([`profiler_work`]).
pub async fn take_heap(view: HeapView) -> Result<Profile, ProfileError> {
    let control = jemalloc_pprof::PROF_CTL
        .as_ref()
        .ok_or(ProfileError::NotEnabled)?;
    let mut control = Arc::clone(control).lock_owned().await;
    if !control.activated() {
        return Err(ProfileError::NotActive);
    }
    // The decoded profile is unsampled too: a delta profile keeps the
    // earlier one for the whole window, and it is not the program's memory.
    let sampling_period = 1_i64 << control.lg_sample();
    off_runtime(move || {
        unsampled(|| {
            // jemalloc_pprof's errors are `anyhow::Error`s: only their text is kept.
            let raw = profiler_work(
                || control.dump_pprof().map_err(|error| error.to_string()),
                |raw| raw.as_ref().map_or(0, |raw| usable_bytes(raw.capacity())),
            )
            .map_err(ProfileError::Dump)?;
            let mut profile = decode(&raw)?;
            // Bytes allocated per sample on average (jemalloc_pprof leaves it 0).
            profile.period = sampling_period;
            if view == HeapView::Program {
                drop_symbolizer_samples(&mut profile, 0);
                trim_allocator_frames(&mut profile);
                mark_symbolized(&mut profile);
            }
            Ok(profile)
        })
    })
    .await?
}

/// The sampled in-use heap as jemalloc_pprof produces it: a gzipped pprof
/// profile whose stacks still start inside the allocator. Prefer
/// [`heap_profile`]; this one shows why.
pub async fn raw_heap_profile() -> Result<Vec<u8>, ProfileError> {
    let profile = take_heap(HeapView::Raw).await?;
    off_runtime(move || encode(&profile)).await
}

/// The sampled in-use heap (`inuse_space`, bytes) as a gzipped pprof
/// profile of the program's own memory, whose stacks start at the program's
/// own frames and which `go tool pprof` takes as symbolized ([`HeapView::Program`]):
/// serve it at `/debug/pprof/heap` and `go tool pprof -top` names the
/// allocating function first.
pub async fn heap_profile() -> Result<Vec<u8>, ProfileError> {
    let profile = take_heap(HeapView::Program).await?;
    off_runtime(move || encode(&profile)).await
}

/// What the heap gained and lost over `window`: a profile taken now
/// subtracted from one taken `window` later ([`delta`]), what Go's
/// `/debug/pprof/heap?seconds=N` serves.
pub async fn heap_growth(view: HeapView, window: Duration) -> Result<Profile, ProfileError> {
    let base = take_heap(view).await?;
    tokio::time::sleep(window).await;
    let current = take_heap(view).await?;
    off_runtime(move || delta(&base, &current)).await
}

/// A flamegraph (SVG) of the sampled in-use heap as [`heap_profile`] serves
/// it: one tower per allocating stack, as wide as the bytes it holds.
pub async fn heap_flamegraph() -> Result<Vec<u8>, ProfileError> {
    let profile = take_heap(HeapView::Program).await?;
    off_runtime(move || flamegraph(&profile, 0, "in-use heap (jemalloc, sampled)", "bytes")).await?
}

/// `current − base`, stack by stack: what was allocated between two
/// profiles of the same process and is still live (positive), and what was
/// freed (negative). Stacks are matched by their addresses and resolved
/// frames; samples that cancel out are left out. `go tool pprof -base`
/// does the same from two files.
pub fn delta(base: &Profile, current: &Profile) -> Profile {
    let mut merged = Merger::default();
    merged.profile.string_table.push(String::new());
    merged.strings.insert(String::new(), 0);
    let header = |merged: &mut Merger, value: &ValueType| ValueType {
        r#type: merged.intern(string(current, value.r#type)),
        unit: merged.intern(string(current, value.unit)),
    };
    merged.profile.sample_type = current
        .sample_type
        .iter()
        .map(|value| header(&mut merged, value))
        .collect();
    merged.profile.period_type = current
        .period_type
        .as_ref()
        .map(|value| header(&mut merged, value));
    merged.profile.period = current.period;
    merged.profile.time_nanos = base.time_nanos;
    merged.profile.duration_nanos = current.time_nanos.saturating_sub(base.time_nanos);
    for mapping in &current.mapping {
        let filename = merged.intern(string(current, mapping.filename));
        let build_id = merged.intern(string(current, mapping.build_id));
        merged.profile.mapping.push(proto::Mapping {
            filename,
            build_id,
            ..mapping.clone()
        });
    }
    for (profile, sign) in [(base, -1), (current, 1)] {
        merged.add(profile, sign);
    }
    let comment = merged.intern(
        "leakscope: delta profile, later heap minus earlier heap (negative: freed in between)",
    );
    merged.profile.comment.push(comment);
    let Merger {
        mut profile,
        samples,
        ..
    } = merged;
    profile.sample = samples
        .into_iter()
        .filter(|(_, value)| value.iter().any(|value| *value != 0))
        .map(|(location_id, value)| Sample {
            location_id,
            value,
            label: Vec::new(),
        })
        .collect();
    drop_unused_locations(&mut profile);
    profile
}

/// A location by its mapping, address and `(function, line)`s.
type LocationKey = (u64, u64, Vec<(u64, i64)>);

/// Builds one profile out of several, re-interning every name.
#[derive(Default)]
struct Merger {
    profile: Profile,
    strings: HashMap<String, i64>,
    /// (name, system name, file, start line) → function id
    functions: HashMap<(i64, i64, i64, i64), u64>,
    /// (mapping, address, [(function, line)]) → location id
    locations: HashMap<LocationKey, u64>,
    /// stack → summed values, in first-seen order for a stable output
    samples: BTreeMap<Vec<u64>, Vec<i64>>,
}

impl Merger {
    fn intern(&mut self, text: &str) -> i64 {
        if let Some(index) = self.strings.get(text) {
            return *index;
        }
        self.profile.string_table.push(text.to_string());
        let index = self.profile.string_table.len() as i64 - 1;
        self.strings.insert(text.to_string(), index);
        index
    }

    fn add(&mut self, from: &Profile, sign: i64) {
        let mut function_ids = HashMap::new();
        for function in &from.function {
            let key = (
                self.intern(string(from, function.name)),
                self.intern(string(from, function.system_name)),
                self.intern(string(from, function.filename)),
                function.start_line,
            );
            let next_id = self.functions.len() as u64 + 1;
            let id = *self.functions.entry(key).or_insert(next_id);
            if id == next_id {
                self.profile.function.push(Function {
                    id,
                    name: key.0,
                    system_name: key.1,
                    filename: key.2,
                    start_line: key.3,
                });
            }
            function_ids.insert(function.id, id);
        }
        let mut location_ids = HashMap::new();
        for location in &from.location {
            let lines: Vec<(u64, i64)> = location
                .line
                .iter()
                .map(|line| {
                    (
                        function_ids.get(&line.function_id).copied().unwrap_or(0),
                        line.line,
                    )
                })
                .collect();
            let key = (location.mapping_id, location.address, lines);
            let next_id = self.locations.len() as u64 + 1;
            let id = *self.locations.entry(key.clone()).or_insert(next_id);
            if id == next_id {
                self.profile.location.push(Location {
                    id,
                    mapping_id: key.0,
                    address: key.1,
                    line: key
                        .2
                        .iter()
                        .map(|(function_id, line)| Line {
                            function_id: *function_id,
                            line: *line,
                        })
                        .collect(),
                    is_folded: location.is_folded,
                });
            }
            location_ids.insert(location.id, id);
        }
        let width = self.profile.sample_type.len().max(1);
        for sample in &from.sample {
            let stack: Vec<u64> = sample
                .location_id
                .iter()
                .map(|id| location_ids.get(id).copied().unwrap_or(0))
                .collect();
            let values = self.samples.entry(stack).or_insert_with(|| vec![0; width]);
            for (total, value) in values.iter_mut().zip(&sample.value) {
                *total += sign * value;
            }
        }
    }
}

/// A heap profile as text, the counterpart of Go's
/// `/debug/pprof/heap?debug=1`: the total, then each stack with its bytes,
/// largest first, as addresses and then one `#` line per frame
/// (function, `file:line`), inlined frames included.
///
/// jemalloc_pprof keeps only sampled bytes (`inuse_space`), not object
/// counts, so unlike Go's text this one has no `objects` columns.
pub fn text_view(profile: &Profile, sample_index: usize) -> String {
    let locations: HashMap<u64, &Location> = profile
        .location
        .iter()
        .map(|location| (location.id, location))
        .collect();
    let functions: HashMap<u64, &Function> = profile
        .function
        .iter()
        .map(|function| (function.id, function))
        .collect();
    let value_type = profile
        .sample_type
        .get(sample_index)
        .map_or(String::from("value"), |value| {
            format!(
                "{} ({})",
                string(profile, value.r#type),
                string(profile, value.unit)
            )
        });
    let mut samples: Vec<&Sample> = profile.sample.iter().collect();
    let value = |sample: &Sample| sample.value.get(sample_index).copied().unwrap_or(0);
    samples.sort_by_key(|sample| std::cmp::Reverse(value(sample).abs()));
    let mut text = format!(
        "heap profile: {} in {} stacks, {value_type}, sampled every {} bytes on average\n",
        total(profile, sample_index),
        samples.len(),
        profile.period
    );
    for comment in &profile.comment {
        text.push_str(&format!("# {}\n", string(profile, *comment)));
    }
    for sample in samples {
        let addresses: Vec<String> = sample
            .location_id
            .iter()
            .map(|id| locations.get(id).map_or(0, |location| location.address))
            .map(|address| format!("{address:#x}"))
            .collect();
        text.push_str(&format!("\n{} @ {}\n", value(sample), addresses.join(" ")));
        for id in &sample.location_id {
            let Some(location) = locations.get(id) else {
                continue;
            };
            if location.line.is_empty() {
                text.push_str(&format!("#\t{:#x}\t?\n", location.address));
            }
            for line in &location.line {
                let (name, file) = functions.get(&line.function_id).map_or(("?", ""), |f| {
                    (string(profile, f.name), string(profile, f.filename))
                });
                text.push_str(&format!(
                    "#\t{:#x}\t{name}\t{file}:{}\n",
                    location.address, line.line
                ));
            }
        }
    }
    text
}

/// Draws a profile's value `sample_index` as a flamegraph (SVG, via
/// inferno): stacks root at the bottom, leaves on top.
pub fn flamegraph(
    profile: &Profile,
    sample_index: usize,
    title: &str,
    count_name: &str,
) -> Result<Vec<u8>, ProfileError> {
    let mut folded: BTreeMap<String, i64> = BTreeMap::new();
    for (stack, value) in stacks(profile, sample_index) {
        // inferno separates frames with ';' and takes the count after the
        // last space, so spaces inside names are fine.
        let root_first: Vec<String> = stack
            .iter()
            .rev()
            .map(|frame| frame.replace(';', ","))
            .collect();
        *folded.entry(root_first.join(";")).or_default() += value;
    }
    let lines: Vec<String> = folded
        .into_iter()
        .filter(|(_, value)| *value > 0)
        .map(|(stack, value)| format!("{stack} {value}"))
        .collect();
    let mut options = inferno::flamegraph::Options::default();
    options.title = title.to_string();
    options.count_name = count_name.to_string();
    let mut svg = Vec::new();
    inferno::flamegraph::from_lines(&mut options, lines.iter().map(String::as_str), &mut svg)
        .map_err(|error| ProfileError::Dump(format!("flamegraph: {error}")))?;
    Ok(svg)
}

/// Tasks that wait at the same place, from a tokio task dump: the
/// counterpart of one entry in Go's `/debug/pprof/goroutine?debug=1`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskSite {
    /// How many tasks wait here.
    pub tasks: usize,
    /// The innermost frame that is not tokio's, the standard library's or
    /// `futures`': usually the async function (or its `{{closure}}`) whose
    /// `.await` the tasks are stuck in.
    pub function: String,
    /// `file:line` of that frame, when the binary has line tables.
    pub location: String,
    /// That frame and its callers up to the task's root, without tokio's
    /// scheduler frames (leaf first, as in a pprof sample).
    pub stack: Vec<String>,
}

impl TaskSite {
    /// What the site's strings hold on the heap ([`usable_bytes`]).
    #[cfg(all(
        feature = "taskdump",
        tokio_unstable,
        target_os = "linux",
        any(target_arch = "x86", target_arch = "x86_64", target_arch = "aarch64")
    ))]
    fn usable_bytes(&self) -> i64 {
        usable_bytes(self.function.capacity())
            + usable_bytes(self.location.capacity())
            + usable_bytes(self.stack.capacity() * std::mem::size_of::<String>())
            + self
                .stack
                .iter()
                .map(|frame| usable_bytes(frame.capacity()))
                .sum::<i64>()
    }

    /// The function and, when known, its `file:line` in parentheses.
    pub fn label(&self) -> String {
        if self.location.is_empty() {
            self.function.clone()
        } else {
            format!("{} ({})", self.function, self.location)
        }
    }
}

impl fmt::Display for TaskSite {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let plural = if self.tasks == 1 { "" } else { "s" };
        write!(f, "{} task{plural} waiting at {}", self.tasks, self.label())
    }
}

/// Whether a frame belongs to the async machinery around a task rather than
/// to the code the task runs.
#[cfg(all(
    feature = "taskdump",
    tokio_unstable,
    target_os = "linux",
    any(target_arch = "x86", target_arch = "x86_64", target_arch = "aarch64")
))]
fn is_runtime_frame(function: &str) -> bool {
    let path = function.trim_start_matches('<');
    [
        "tokio::",
        "core::",
        "std::",
        "futures",
        "backtrace::",
        "alloc::",
    ]
    .iter()
    .any(|prefix| path.starts_with(prefix))
}

/// One resolved frame of a task's backtrace.
#[cfg(all(
    feature = "taskdump",
    tokio_unstable,
    target_os = "linux",
    any(target_arch = "x86", target_arch = "x86_64", target_arch = "aarch64")
))]
struct Frame {
    name: String,
    file: String,
    line: u32,
}

#[cfg(all(
    feature = "taskdump",
    tokio_unstable,
    target_os = "linux",
    any(target_arch = "x86", target_arch = "x86_64", target_arch = "aarch64")
))]
impl Frame {
    /// Source from a registry crate, a git dependency or the standard
    /// library (inlined frames often carry only a short name, so the file
    /// tells whose code it is).
    fn is_library_source(&self) -> bool {
        ["/.cargo/registry/", "/.cargo/git/", "/rustlib/src/"]
            .iter()
            .any(|marker| self.file.contains(marker))
            || self.file.starts_with("/rustc/")
    }

    fn is_own(&self) -> bool {
        !is_runtime_frame(&self.name) && !self.file.is_empty() && !self.is_library_source()
    }

    /// `file:line`, relative to the working directory when inside it.
    fn location(&self) -> String {
        let cwd = std::env::current_dir().unwrap_or_default();
        let file = std::path::Path::new(&self.file)
            .strip_prefix(&cwd)
            .map_or(self.file.clone(), |relative| relative.display().to_string());
        match (file.as_str(), self.line) {
            ("", _) => String::new(),
            (file, 0) => file.to_string(),
            (file, line) => format!("{file}:{line}"),
        }
    }
}

/// Drops the `::h0123456789abcdef` hash rustc appends to symbol names.
#[cfg(all(
    feature = "taskdump",
    tokio_unstable,
    target_os = "linux",
    any(target_arch = "x86", target_arch = "x86_64", target_arch = "aarch64")
))]
fn without_hash(symbol: &str) -> &str {
    match symbol.rsplit_once("::h") {
        Some((name, hash)) if hash.len() == 16 && hash.bytes().all(|b| b.is_ascii_hexdigit()) => {
            name
        }
        _ => symbol,
    }
}

/// Every task of the current runtime, grouped by where it waits, largest
/// group first: tokio's task dump (`Handle::dump`) resolved to function names
/// and lines. `None` if the dump did not finish within `timeout` (a worker
/// thread blocked, see tokio's docs).
///
/// Task dumps are an unstable tokio API: they exist only when every crate is
/// built with `--cfg tokio_unstable`, tokio has its `taskdump` feature, and
/// the target is Linux on x86, x86-64 or AArch64. A dump re-polls every task
/// in a tracing mode: it is a debugging tool, not something to run often.
#[cfg(all(
    feature = "taskdump",
    tokio_unstable,
    target_os = "linux",
    any(target_arch = "x86", target_arch = "x86_64", target_arch = "aarch64")
))]
pub async fn task_sites(timeout: std::time::Duration) -> Option<Vec<TaskSite>> {
    let handle = tokio::runtime::Handle::current();
    let dump = tokio::time::timeout(timeout, handle.dump()).await.ok()?;
    // Resolving the backtraces symbolizes: the blocking pool's work, and the
    // profiler's own memory (see `profiler_work`).
    off_runtime(move || {
        profiler_work(
            || group_by_site(&dump),
            |sites| {
                usable_bytes(sites.capacity() * std::mem::size_of::<TaskSite>())
                    + sites.iter().map(TaskSite::usable_bytes).sum::<i64>()
            },
        )
    })
    .await
    .ok()
}

/// Resolves a task dump and groups its tasks by where they wait.
#[cfg(all(
    feature = "taskdump",
    tokio_unstable,
    target_os = "linux",
    any(target_arch = "x86", target_arch = "x86_64", target_arch = "aarch64")
))]
fn group_by_site(dump: &tokio::runtime::Dump) -> Vec<TaskSite> {
    let mut sites: BTreeMap<(String, String), TaskSite> = BTreeMap::new();
    for task in dump.tasks().iter() {
        let backtraces = task.trace().resolve_backtraces();
        // A task waiting on several futures (a `select!`) has one backtrace
        // per leaf; they meet in the same caller, so the first one names it.
        let frames: Vec<Frame> = backtraces
            .first()
            .map(|backtrace| {
                backtrace
                    .frames()
                    .flat_map(|frame| frame.symbols())
                    .map(|symbol| Frame {
                        name: symbol
                            .name_demangled()
                            .map_or("?", without_hash)
                            .to_string(),
                        file: symbol
                            .filename()
                            .map(|file| file.display().to_string())
                            .unwrap_or_default(),
                        line: symbol.lineno().unwrap_or(0),
                    })
                    .collect()
            })
            .unwrap_or_default();
        // The program's own frame if there is one (a task of a library, an
        // HTTP connection say, has none): the first whose name is not the
        // runtime's and whose source is not a dependency's or std's.
        let own = frames.iter().position(Frame::is_own).or_else(|| {
            frames
                .iter()
                .position(|frame| !is_runtime_frame(&frame.name))
        });
        let (function, location, stack) = match own {
            Some(first) => {
                let own_only = frames[first].is_own();
                (
                    frames[first].name.clone(),
                    frames[first].location(),
                    frames[first..]
                        .iter()
                        .filter(|frame| {
                            if own_only {
                                frame.is_own()
                            } else {
                                !is_runtime_frame(&frame.name)
                            }
                        })
                        .map(|frame| frame.name.clone())
                        .collect(),
                )
            }
            None => ("(tokio internals)".to_string(), String::new(), Vec::new()),
        };
        sites
            .entry((function.clone(), location.clone()))
            .or_insert(TaskSite {
                tasks: 0,
                function,
                location,
                stack,
            })
            .tasks += 1;
    }
    let mut sites: Vec<TaskSite> = sites.into_values().collect();
    sites.sort_by(|a, b| {
        b.tasks
            .cmp(&a.tasks)
            .then_with(|| a.function.cmp(&b.function))
    });
    sites
}

/// A goroutine-style profile of tasks (`goroutine`, `count`): one sample per
/// [`TaskSite`], so `go tool pprof -top` lists where tasks wait, most first.
pub fn task_profile(sites: &[TaskSite]) -> Profile {
    let stacks: Vec<(Vec<String>, i64)> = sites
        .iter()
        .map(|site| {
            // The leaf carries its location: inlined async blocks have short
            // names (`{async_block#0}`) that only the line tells apart.
            let mut stack = vec![site.label()];
            stack.extend(site.stack.iter().skip(1).cloned());
            (stack, site.tasks as i64)
        })
        .collect();
    let stacks: Vec<(&[String], i64)> = stacks
        .iter()
        .map(|(stack, tasks)| (&stack[..], *tasks))
        .collect();
    Profile::from_stacks(("goroutine", "count"), &stacks)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decode_refuses_empty_input_and_a_gzip_bomb() {
        let empty = decode(&[]).unwrap_err();
        assert_eq!(empty.to_string(), "not a pprof profile: the input is empty");

        // 300 MiB of zeros gzip to a megabyte or so.
        let mut gzip = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        let zeros = vec![0u8; 1 << 20];
        for _ in 0..300 {
            gzip.write_all(&zeros).unwrap();
        }
        let bomb = gzip.finish().unwrap();
        assert!(bomb.len() < 4 << 20);
        let refused = decode(&bomb).unwrap_err();
        assert!(
            refused.to_string().contains("expands past 256 MiB"),
            "{refused}"
        );

        let garbage = decode(b"not a profile at all").unwrap_err();
        assert!(
            garbage.to_string().starts_with("not a pprof profile"),
            "{garbage}"
        );
    }

    const JEMALLOC_LEAF: [&str; 5] = [
        "prof_backtrace_impl",
        "_rjem_je_prof_backtrace",
        "_rjem_je_malloc_default",
        "<tikv_jemallocator::Jemalloc as core::alloc::global::GlobalAlloc>::alloc_zeroed",
        "__rust_alloc_zeroed",
    ];

    fn stack<'a>(own: &[&'a str]) -> Vec<&'a str> {
        JEMALLOC_LEAF
            .iter()
            .copied()
            .chain(own.iter().copied())
            .collect()
    }

    #[test]
    fn allocator_frames_are_recognised() {
        for frame in JEMALLOC_LEAF.iter().chain(&[
            "malloc",
            "calloc",
            "alloc::raw_vec::RawVecInner<A>::try_allocate_in",
            "<u8 as alloc::vec::spec_from_elem::SpecFromElem>::from_elem",
            "<alloc::string::String as core::clone::Clone>::clone",
            "hashbrown::raw::RawTable<T,A>::reserve_rehash",
            "__rustc::__rust_alloc_zeroed",
            "<alloc::raw_vec::RawVecInner>::try_allocate_in",
            "std::collections::hash::map::HashMap<K,V,S>::insert",
        ]) {
            assert!(is_allocator_frame(frame), "{frame}");
        }
        for frame in [
            "ch5_pprof::bad::LeakyService::cache_data",
            "<app::Cache as app::Store>::insert",
            "main",
            "tokio::sync::mpsc::bounded::channel",
            "core::ops::function::FnOnce::call_once",
            "std::rt::lang_start",
        ] {
            assert!(!is_allocator_frame(frame), "{frame}");
        }
    }

    #[test]
    fn allocator_sources_are_recognised() {
        for file in [
            "/rustc/59807616e1fa2540724bfbac14d7976d7e4a3860/library/alloc/src/vec/spec_from_elem.rs",
            "/root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/tikv-jemallocator-0.7.0/src/lib.rs",
            "/work/target/debug/build/tikv-jemalloc-sys-45b23facbe54c359/out/build/src/jemalloc.c",
            "/rust/deps/hashbrown-0.16.1/src/raw/alloc.rs",
        ] {
            assert!(is_allocator_source(file), "{file}");
        }
        for file in [
            "src/bad.rs",
            "/root/.cargo/registry/src/index/tokio-1.54.1/src/sync/mpsc/chan.rs",
        ] {
            assert!(!is_allocator_source(file), "{file}");
        }
    }

    #[test]
    fn trimming_charges_each_sample_to_its_caller() {
        let mut profile = Profile::from_stacks(
            ("inuse_space", "bytes"),
            &[
                (&stack(&["app::cache_insert", "main"])[..], 3000),
                (&stack(&["app::subscribe", "main"])[..], 1000),
            ],
        );
        assert_eq!(top(&profile, 0)[0].function, "prof_backtrace_impl");
        assert_eq!(top(&profile, 0)[0].flat, 4000);

        let removed = trim_allocator_frames(&mut profile);

        assert_eq!(removed, 2 * JEMALLOC_LEAF.len());
        let costs = top(&profile, 0);
        assert_eq!(costs[0].function, "app::cache_insert");
        assert_eq!((costs[0].flat, costs[0].cum), (3000, 3000));
        assert_eq!(costs[1].function, "app::subscribe");
        assert_eq!(
            costs[2],
            FunctionCost {
                function: "main".into(),
                flat: 0,
                cum: 4000
            }
        );
        assert_eq!(total(&profile, 0), 4000);
        assert!(!profile.location.is_empty() && profile.location.len() == 3);
    }

    #[test]
    fn inlined_allocator_lines_are_trimmed_inside_a_location() {
        // One address whose lines are: alloc::vec::from_elem inlined into
        // app::fill, which is the caller of the allocator.
        let mut profile = Profile::from_stacks(
            ("inuse_space", "bytes"),
            &[(
                &["malloc", "alloc::vec::from_elem", "app::fill", "main"][..],
                512,
            )],
        );
        let from_elem = profile.location[1].line[0].clone();
        profile.location[2].line.insert(0, from_elem);
        profile.sample[0].location_id.remove(1);

        assert_eq!(trim_allocator_frames(&mut profile), 2);

        assert_eq!(
            stacks(&profile, 0),
            vec![(vec!["app::fill".to_string(), "main".to_string()], 512)]
        );
    }

    #[test]
    fn a_stack_of_allocator_frames_only_is_kept_whole() {
        let mut profile =
            Profile::from_stacks(("inuse_space", "bytes"), &[(&JEMALLOC_LEAF[..], 64)]);
        assert_eq!(trim_allocator_frames(&mut profile), 0);
        assert_eq!(stacks(&profile, 0)[0].0.len(), JEMALLOC_LEAF.len());
    }

    #[test]
    fn encode_and_decode_round_trip_gzipped_and_plain() {
        let profile = Profile::from_stacks(("inuse_space", "bytes"), &[(&["a", "b"][..], 7)]);
        let gzipped = encode(&profile);
        assert_eq!(&gzipped[..2], &[0x1f, 0x8b]);
        assert_eq!(decode(&gzipped).unwrap(), profile);
        assert_eq!(decode(&profile.encode_to_vec()).unwrap(), profile);
        assert!(matches!(
            decode(b"\x1f\x8bnot gzip"),
            Err(ProfileError::Decode(_))
        ));
    }

    #[test]
    fn task_sites_become_a_count_profile() {
        let sites = [
            TaskSite {
                tasks: 5,
                function: "app::worker::{{closure}}".into(),
                location: "src/app.rs:10".into(),
                stack: vec!["app::worker::{{closure}}".into(), "app::start".into()],
            },
            TaskSite {
                tasks: 1,
                function: "app::serve".into(),
                location: String::new(),
                stack: vec![],
            },
        ];
        assert_eq!(
            sites[0].to_string(),
            "5 tasks waiting at app::worker::{{closure}} (src/app.rs:10)"
        );
        assert_eq!(sites[1].to_string(), "1 task waiting at app::serve");
        let profile = task_profile(&sites);
        assert_eq!(total(&profile, 0), 6);
        assert_eq!(
            top(&profile, 0)[0],
            FunctionCost {
                function: "app::worker::{{closure}} (src/app.rs:10)".into(),
                flat: 5,
                cum: 5
            }
        );
        assert_eq!(top(&profile, 0)[1].function, "app::serve");
    }

    #[cfg(all(
        feature = "taskdump",
        tokio_unstable,
        target_os = "linux",
        any(target_arch = "x86", target_arch = "x86_64", target_arch = "aarch64")
    ))]
    #[test]
    fn symbol_hashes_are_dropped() {
        assert_eq!(without_hash("app::f::h0123456789abcdef"), "app::f");
        assert_eq!(without_hash("app::handler"), "app::handler");
    }

    #[test]
    fn the_symbolizer_s_own_memory_is_left_out_and_noted() {
        let mut profile = Profile::from_stacks(
            ("inuse_space", "bytes"),
            &[
                (
                    &[
                        "gimli::read::abbrev::Abbreviations::insert",
                        "backtrace::symbolize::resolve",
                        "app::serve_profile",
                    ][..],
                    40 << 20,
                ),
                (&["app::cache_insert", "main"][..], 5 << 20),
            ],
        );
        assert_eq!(drop_symbolizer_samples(&mut profile, 0), 40 << 20);
        assert_eq!(total(&profile, 0), 5 << 20);
        let comment = &profile.string_table[profile.comment[0] as usize];
        assert!(
            comment.contains("41943040 bytes held by the profiler's symbolizer"),
            "{comment}"
        );
        assert_eq!(profile.location.len(), 2);
    }

    #[test]
    fn marked_mappings_say_they_are_symbolized() {
        let mut profile = Profile::from_stacks(("inuse_space", "bytes"), &[(&["a"][..], 1)]);
        profile.mapping.push(proto::Mapping {
            id: 1,
            ..Default::default()
        });
        mark_symbolized(&mut profile);
        let mapping = &profile.mapping[0];
        assert!(mapping.has_functions && mapping.has_filenames && mapping.has_line_numbers);
    }

    #[test]
    fn a_flamegraph_has_a_tower_per_stack() {
        let profile = Profile::from_stacks(
            ("inuse_space", "bytes"),
            &[
                (&["app::cache_insert", "main"][..], 3000),
                (&["app::subscribe", "main"][..], 1000),
            ],
        );
        let svg = String::from_utf8(flamegraph(&profile, 0, "heap", "bytes").unwrap()).unwrap();
        assert!(
            svg.contains("<svg")
                && svg.contains("app::cache_insert")
                && svg.contains("app::subscribe")
        );
    }

    #[test]
    fn a_delta_profile_keeps_growth_and_frees_and_drops_what_cancels() {
        let base = Profile::from_stacks(
            ("inuse_space", "bytes"),
            &[
                (&["cache", "main"][..], 100),
                (&["config", "main"][..], 50),
                (&["scratch", "main"][..], 30),
            ],
        );
        let current = Profile::from_stacks(
            ("inuse_space", "bytes"),
            &[(&["cache", "main"][..], 900), (&["config", "main"][..], 50)],
        );
        let growth = delta(&base, &current);
        let mut stacks = stacks(&decode(&encode(&growth)).unwrap(), 0);
        stacks.sort();
        assert_eq!(
            stacks,
            vec![
                (vec!["cache".to_string(), "main".to_string()], 800),
                (vec!["scratch".to_string(), "main".to_string()], -30),
            ]
        );
        assert_eq!(total(&growth, 0), 770);
        assert_eq!(growth.location.len(), 3, "config's location is unused");
        let name = |index: i64| growth.string_table[index as usize].as_str();
        assert_eq!(name(growth.sample_type[0].r#type), "inuse_space");
        assert!(name(growth.comment[0]).contains("delta profile"));
    }

    #[test]
    fn the_text_view_lists_stacks_largest_first_with_their_frames() {
        let mut profile = Profile::from_stacks(
            ("inuse_space", "bytes"),
            &[
                (&["app::parse", "main"][..], 100),
                (&["app::cache_insert", "main"][..], 900),
            ],
        );
        profile.period = 524288;
        profile.location[0].address = 0x1234; // app::parse
        let text = text_view(&profile, 0);
        assert_eq!(
            text,
            "heap profile: 1000 in 2 stacks, inuse_space (bytes), sampled every 524288 bytes on average\n\
             \n900 @ 0x0 0x0\n\
             #\t0x0\tapp::cache_insert\t:0\n\
             #\t0x0\tmain\t:0\n\
             \n100 @ 0x1234 0x0\n\
             #\t0x1234\tapp::parse\t:0\n\
             #\t0x0\tmain\t:0\n"
        );
    }

    #[test]
    fn diff_shows_what_grew() {
        let base = Profile::from_stacks(
            ("inuse_space", "bytes"),
            &[(&["cache", "main"][..], 100), (&["config", "main"][..], 50)],
        );
        let current = Profile::from_stacks(
            ("inuse_space", "bytes"),
            &[(&["cache", "main"][..], 900), (&["config", "main"][..], 50)],
        );
        let diff = top_diff(&base, &current, 0);
        assert_eq!(
            diff[0],
            FunctionCost {
                function: "cache".into(),
                flat: 800,
                cum: 800
            }
        );
        assert_eq!(
            diff.iter()
                .find(|cost| cost.function == "config")
                .unwrap()
                .flat,
            0
        );
    }
}
