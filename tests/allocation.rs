//! Memory bounded by configuration, not by luck: decoding a body allocates a small
//! multiple of the body, whatever its shape. Measured with a counting allocator (this
//! binary holds one test, so nothing else allocates beside it).

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use clw_gateway::intake::decode_referral;

struct Counting;

static NOW: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            let now = NOW.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
            PEAK.fetch_max(now, Ordering::Relaxed);
        }
        p
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        NOW.fetch_sub(layout.size(), Ordering::Relaxed);
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

/// Bytes allocated at the peak of `f`, beyond what was live before it.
fn peak_of<T>(f: impl FnOnce() -> T) -> (T, usize) {
    let before = NOW.load(Ordering::Relaxed);
    PEAK.store(before, Ordering::Relaxed);
    let out = f();
    (out, PEAK.load(Ordering::Relaxed) - before)
}

fn bundle_of(entries: &str, n: usize) -> Vec<u8> {
    let mut body = String::from(r#"{"resourceType":"Bundle","type":"message","entry":["#);
    for i in 0..n {
        if i > 0 {
            body.push(',');
        }
        body.push_str(entries);
    }
    body.push_str("]}");
    body.into_bytes()
}

#[test]
fn decoding_a_one_mib_body_allocates_a_small_multiple_of_it() {
    const MIB: usize = 1024 * 1024;
    let shapes: [(&str, Vec<u8>); 4] = [
        ("empty entries", bundle_of("{}", MIB / 3)),
        ("empty arrays", bundle_of("[]", MIB / 3)),
        ("nested", {
            let mut b = "[".repeat(MIB / 2).into_bytes();
            b.extend(std::iter::repeat_n(b']', MIB / 2));
            b
        }),
        (
            "long strings",
            bundle_of(
                &format!(
                    r#"{{"resource":{{"resourceType":"Basic","id":"{}"}}}}"#,
                    "x".repeat(4000)
                ),
                250,
            ),
        ),
    ];
    let mut report = Vec::new();
    for (name, body) in &shapes {
        let (result, peak) = peak_of(|| decode_referral(body).is_ok());
        assert!(!result, "{name} is not a referral");
        report.push(format!(
            "{name}: {} bytes in, peak {} bytes",
            body.len(),
            peak
        ));
        assert!(
            peak <= 4 * body.len() + MIB,
            "{name}: decoding {} bytes took {peak} bytes at its peak",
            body.len()
        );
    }
    println!("{}", report.join("\n"));
}
