//! The draft generation benchmark (issue #4: template generation for 10,000
//! threads in at most 1 s). `cargo bench --bench generate` (release build);
//! `-- --threads N` for another count.
//!
//! The threads are the labelled corpus of `tests/corpus/threads/` (seven
//! languages' worth of realistic mail: top- and bottom-posted, HTML, Outlook
//! headers, newsletters), parsed once and cycled to N. Timed separately:
//! - **template**: `Generator::draft_note` on a thread already analysed: the
//!   generator's own work (context, reply-all, language, minijinja render, the
//!   check that push would accept the note). This is the figure.
//! - **analysis + template**: `analyze_thread` then the draft, what a first
//!   `bridge generate` spends in CPU per thread (without file I/O).
//!
//! Prints the figures and exits 1 if the template figure misses the target.

use std::time::{Duration, Instant};

use mailbridge::analyze::analyze_thread;
use mailbridge::config::Config;
use mailbridge::generate::{check_note, Context, DraftInput, Generator, Templates};
use mailbridge::message::parse_message;

#[path = "../tests/generate/corpus.rs"]
mod corpus;

const TARGET: Duration = Duration::from_secs(1);

/// CPU time of this thread: on a shared machine (two cores, other builds running)
/// wall time swings by half; the CPU time the work took does not.
fn cpu_time() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into the timespec we own.
    unsafe {
        libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts);
    }
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

fn main() {
    let mut threads = 10_000usize;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--threads" => {
                threads = args
                    .next()
                    .and_then(|n| n.parse().ok())
                    .expect("--threads N")
            }
            "--bench" => {}
            "--help" | "-h" => {
                println!("cargo bench --bench generate [-- --threads N]");
                return;
            }
            other => panic!("unknown argument {other}"),
        }
    }
    let config = Config::parse(
        "vault: /home/jason/Notes\naccounts:\n  work:\n    email: jason@example.com\n    name: Jason Vallery\n    imap: { host: imap.example.com }\n",
        std::path::Path::new("/bench/config.yaml"),
    )
    .expect("bench config");
    let account = &config.accounts["work"];
    let user = vec!["jason@example.com".to_string()];
    let corpus: Vec<DraftInput> = corpus::all()
        .into_iter()
        .map(|(stem, case)| {
            let messages: Vec<_> = corpus::raw_messages(&stem, &case)
                .iter()
                .map(|raw| parse_message(raw).expect("corpus mail parses"))
                .collect();
            let analysis = analyze_thread(&messages, &case.user, 0);
            DraftInput {
                account,
                thread_id: format!("<{stem}-0@corpus.test>"),
                subject: case.subject.clone(),
                messages,
                analysis,
                source_file: format!("/home/jason/Notes/Sources/Email/2025/{stem}.md"),
                source_link: format!("Sources/Email/2025/{stem}"),
                user_addresses: case.user.clone(),
                now_unix: 1_767_640_404,
            }
        })
        .collect();
    let inputs: Vec<&DraftInput> = corpus.iter().cycle().take(threads).collect();
    let generator = Generator::builtin_template();

    // Warm-up: page in the code and the allocator.
    for input in inputs.iter().take(200) {
        let _ = generator.draft_note(input);
    }

    let started = Instant::now();
    let cpu_started = cpu_time();
    let mut bytes = 0usize;
    let mut refused = 0usize;
    for input in &inputs {
        match generator.draft_note(input) {
            Ok(note) => bytes += note.len(),
            // A thread with no one to reply to (only the user's own mail).
            Err(_) => refused += 1,
        }
    }
    let template = started.elapsed();
    let template_cpu = cpu_time() - cpu_started;

    let started = Instant::now();
    let cpu_started = cpu_time();
    for input in &inputs {
        let analysis = analyze_thread(&input.messages, &user, 0);
        let again = DraftInput {
            analysis,
            ..(*input).clone()
        };
        let _ = generator.draft_note(&again);
    }
    let with_analysis = started.elapsed();
    let with_analysis_cpu = cpu_time() - cpu_started;

    println!(
        "template generator: {threads} drafts from {} corpus threads in {:.3} s wall, {:.3} s CPU ({:.1} µs per draft, {:.1} MB of notes, {refused} without a recipient); target ≤ {:.1} s",
        corpus.len(),
        template.as_secs_f64(),
        template_cpu.as_secs_f64(),
        template.as_secs_f64() * 1e6 / threads as f64,
        bytes as f64 / 1e6,
        TARGET.as_secs_f64(),
    );
    println!(
        "analysis + template: {threads} threads in {:.3} s wall, {:.3} s CPU ({:.1} µs per thread)",
        with_analysis.as_secs_f64(),
        with_analysis_cpu.as_secs_f64(),
        with_analysis.as_secs_f64() * 1e6 / threads as f64,
    );
    // Where the template generator's time goes.
    let templates = Templates::load(None, None).expect("built-in templates");
    let started = Instant::now();
    let contexts: Vec<Context> = inputs.iter().map(|i| Context::new(i)).collect();
    let context = started.elapsed();
    let started = Instant::now();
    let notes: Vec<String> = contexts
        .iter()
        .map(|c| templates.render_note(c, None).expect("renders"))
        .collect();
    let render = started.elapsed();
    let started = Instant::now();
    let checked = notes.iter().filter(|n| check_note(n).is_ok()).count();
    let check = started.elapsed();
    println!(
        "  of which: context (reply-all, language, views) {:.3} s, minijinja render {:.3} s, check (YAML front matter, addresses) {:.3} s; {checked} checked",
        context.as_secs_f64(),
        render.as_secs_f64(),
        check.as_secs_f64()
    );
    if cfg!(debug_assertions) {
        println!("(debug build: the figures mean nothing; run `cargo bench --bench generate`)");
    } else if template > TARGET.mul_f64(threads as f64 / 10_000.0) {
        eprintln!("template generation missed the target");
        std::process::exit(1);
    }
}
