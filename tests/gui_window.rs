//! The real windows on a real X server: `mynalink --demo` (staff) and `mynalink kiosk --demo`
//! are started on the Xvfb that `cargo xtask test` runs (`MYNALINK_TEST_DISPLAY`), found with
//! `xwininfo`/`xprop`, photographed with `xwd`, and checked to show something — not a blank
//! or black window — and, for the kiosk, to cover the whole screen. The screenshots are kept in
//! `target/gui-screenshots/` for people to look at.
//!
//! Without `MYNALINK_TEST_DISPLAY` these tests fail; they never skip.

#[path = "common/xwd.rs"]
mod xwd;

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use xwd::Image;

/// How long a debug build on a loaded 2-core machine may take to map its window.
const WINDOW_TIMEOUT: Duration = Duration::from_secs(20);
/// After the window is mapped, how long its content may take to appear.
const CONTENT_TIMEOUT: Duration = Duration::from_secs(10);
const SCREEN: (u32, u32) = (1280, 800);
const STARTUP_PREFIX: &str = "mynalink-startup ";

/// One window at a time: the kiosk covers the screen, and a screenshot of the root window
/// shows whatever is on top.
static DISPLAY_LOCK: Mutex<()> = Mutex::new(());

fn lock_display() -> MutexGuard<'static, ()> {
    DISPLAY_LOCK.lock().unwrap_or_else(|p| p.into_inner())
}

/// The test X server. Fails (never skips) when there is none.
fn test_display() -> String {
    let display = std::env::var("MYNALINK_TEST_DISPLAY").unwrap_or_default();
    assert!(
        !display.is_empty(),
        "MYNALINK_TEST_DISPLAY is not set: the window tests need an X server; run them with \
         `cargo xtask test`, which installs Xvfb and starts one (or start `Xvfb :N -screen 0 \
         1280x800x24` and set MYNALINK_TEST_DISPLAY=:N)"
    );
    let root = x_tool(&display, "xwininfo", &["-root"]);
    let size = (
        info_field(&root, "Width:").unwrap_or(0) as u32,
        info_field(&root, "Height:").unwrap_or(0) as u32,
    );
    assert_eq!(
        size, SCREEN,
        "the test X server {display} must have a {}x{} screen",
        SCREEN.0, SCREEN.1
    );
    display
}

/// Runs an X client (from x11-utils or x11-apps) on `display`; its stdout.
fn x_tool(display: &str, program: &str, args: &[&str]) -> String {
    try_x_tool(display, program, args).unwrap_or_else(|e| panic!("{e}"))
}

/// The same, for queries about a window that may vanish meanwhile (`BadWindow`).
fn try_x_tool(display: &str, program: &str, args: &[&str]) -> Result<String, String> {
    let out = Command::new(program)
        .args(args)
        .env("DISPLAY", display)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program} (packages x11-utils, x11-apps): {e}"));
    if !out.status.success() {
        return Err(format!(
            "`{program} {}` on {display} failed ({}): {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// A number after `name` on a line of xwininfo's output (`  Width: 1280`).
fn info_field(text: &str, name: &str) -> Option<i64> {
    text.lines()
        .find_map(|l| l.trim().strip_prefix(name)?.trim().parse().ok())
}

/// The direct children of the root window (the top-level windows, there being no window
/// manager) with their names: `0x200003 "mynalink": ("mynalink" "Mynalink")  1024x768+0+0 …`.
fn top_level_windows(display: &str) -> Vec<(String, String)> {
    x_tool(display, "xwininfo", &["-root", "-children"])
        .lines()
        .filter_map(|line| {
            let line = line.trim();
            let (id, rest) = line.split_once(' ')?;
            if !id.starts_with("0x") {
                return None;
            }
            let name = rest.strip_prefix('"')?;
            let end = name.rfind("\": (").or_else(|| name.rfind('"'))?;
            Some((id.to_string(), name[..end].to_string()))
        })
        .collect()
}

/// `_NET_WM_PID(CARDINAL) = 1234`.
fn window_pid(display: &str, id: &str) -> Option<u32> {
    let out = try_x_tool(display, "xprop", &["-id", id, "_NET_WM_PID"]).ok()?;
    out.split_once(" = ")?.1.trim().parse().ok()
}

/// Whether the window asks for no decorations: `_MOTIF_WM_HINTS` with the decorations flag
/// (bit 1 of the first field) set and the decorations field (the third) 0, as winit writes it
/// for `decorations: false`.
fn asks_for_no_decorations(display: &str, id: &str) -> Option<bool> {
    let out = x_tool(display, "xprop", &["-id", id, "_MOTIF_WM_HINTS"]);
    let values: Vec<u32> = out
        .split_once(" = ")?
        .1
        .split(',')
        .map(|v| u32::from_str_radix(v.trim().trim_start_matches("0x"), 16).ok())
        .collect::<Option<_>>()?;
    Some(values.len() >= 3 && values[0] & 2 != 0 && values[2] == 0)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Geometry {
    x: i64,
    y: i64,
    width: u32,
    height: u32,
}

/// Map state and position of a window (`xwininfo -id`); `None` once it is gone.
fn window_state(display: &str, id: &str) -> Option<(bool, Geometry)> {
    let info = try_x_tool(display, "xwininfo", &["-id", id]).ok()?;
    let viewable = info.contains("Map State: IsViewable");
    let get = |name| info_field(&info, name).unwrap_or(-1);
    Some((
        viewable,
        Geometry {
            x: get("Absolute upper-left X:"),
            y: get("Absolute upper-left Y:"),
            width: get("Width:").max(0) as u32,
            height: get("Height:").max(0) as u32,
        },
    ))
}

/// The started app; killed if a test fails before it ends it with SIGTERM.
struct App {
    child: Child,
    stderr: Arc<Mutex<Vec<String>>>,
    what: String,
}

impl App {
    fn start(display: &str, args: &[&str]) -> App {
        let data = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("gui-window-data");
        std::fs::create_dir_all(&data).expect("data dir");
        let mut child = Command::new(env!("CARGO_BIN_EXE_mynalink"))
            .args(args)
            .env("DISPLAY", display)
            .env_remove("WAYLAND_DISPLAY")
            .env_remove("WAYLAND_SOCKET")
            .env("MYNALINK_STARTUP_LOG", "1")
            // Never the developer's own settings or outbox.
            .env("XDG_CONFIG_HOME", "/nonexistent/mynalink-tests")
            .env("XDG_DATA_HOME", &data)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start mynalink");
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let pipe = child.stderr.take().expect("stderr piped");
        let lines = Arc::clone(&stderr);
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines() {
                let Ok(line) = line else { break };
                lines.lock().unwrap_or_else(|p| p.into_inner()).push(line);
            }
        });
        App {
            child,
            stderr,
            what: format!("mynalink {}", args.join(" ")),
        }
    }

    fn stderr_text(&self) -> String {
        self.stderr
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .join("\n")
    }

    fn startup_line(&self) -> Option<String> {
        self.stderr
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .find(|l| l.starts_with(STARTUP_PREFIX))
            .cloned()
    }

    /// Panics with the app's stderr when it has exited.
    fn assert_running(&mut self, when: &str) {
        if let Ok(Some(status)) = self.child.try_wait() {
            panic!(
                "`{}` exited ({status}) {when}; stderr:\n{}",
                self.what,
                self.stderr_text()
            );
        }
    }

    /// Waits for the app's own top-level window (its `_NET_WM_PID`) whose name starts with
    /// `prefix` to be mapped and viewable, and for the start-up report of its first frame.
    fn wait_for_window(&mut self, display: &str, prefix: &str) -> (String, String, Geometry) {
        let deadline = Instant::now() + WINDOW_TIMEOUT;
        let pid = self.child.id();
        loop {
            self.assert_running("before its window was shown");
            let mut seen = Vec::new();
            for (id, name) in top_level_windows(display) {
                if !name.starts_with("mynalink") {
                    continue;
                }
                seen.push(format!("{id} {name:?}"));
                if window_pid(display, &id) != Some(pid) {
                    continue;
                }
                let Some((viewable, geometry)) = window_state(display, &id) else {
                    continue;
                };
                if viewable && name.starts_with(prefix) && self.startup_line().is_some() {
                    return (id, name, geometry);
                }
            }
            if Instant::now() > deadline {
                panic!(
                    "`{}` (pid {pid}) showed no viewable top-level window named {prefix:?}… \
                     with a start-up report within {} s; mynalink windows seen: {seen:?}; \
                     stderr:\n{}",
                    self.what,
                    WINDOW_TIMEOUT.as_secs(),
                    self.stderr_text()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// SIGTERM ends the app (the contract with the service manager and the kiosk shell).
    fn terminate(&mut self) {
        let pid = self.child.id().to_string();
        let status = Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -TERM {pid} failed");
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "`{}` did not end within 10 s of SIGTERM",
                self.what
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for App {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `mynalink-startup first_frame_ms=N mode=M` → (N, M).
fn parse_startup(line: &str) -> Option<(u64, String)> {
    let mut ms = None;
    let mut mode = None;
    for field in line.strip_prefix(STARTUP_PREFIX)?.split_whitespace() {
        match field.split_once('=') {
            Some(("first_frame_ms", v)) => ms = v.parse().ok(),
            Some(("mode", v)) => mode = Some(v.to_string()),
            _ => {}
        }
    }
    Some((ms?, mode?))
}

fn screenshot(display: &str) -> Image {
    let out = Command::new("xwd")
        .args(["-root", "-silent"])
        .env("DISPLAY", display)
        .output()
        .expect("run xwd (package x11-apps)");
    assert!(
        out.status.success(),
        "xwd -root failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    xwd::parse(&out.stdout).unwrap_or_else(|e| panic!("xwd's output: {e}"))
}

fn luminance([r, g, b]: [u8; 3]) -> i32 {
    (299 * r as i32 + 587 * g as i32 + 114 * b as i32) / 1000
}

/// What the window area shows.
#[derive(Debug)]
struct Content {
    /// The most frequent colour, taken as the background.
    background: [u8; 3],
    distinct_colours: usize,
    /// Share of pixels that are not the background colour.
    not_background: f64,
    /// Pixels far brighter or darker than the background, as text is.
    contrasting: usize,
    /// Pixels with luminance below 96 (dark text on a light window).
    dark: usize,
}

fn content(image: &Image) -> Content {
    let mut counts: HashMap<[u8; 3], usize> = HashMap::new();
    for &p in &image.pixels {
        *counts.entry(p).or_default() += 1;
    }
    let (background, most) = counts
        .iter()
        .max_by_key(|(_, n)| **n)
        .map(|(c, n)| (*c, *n))
        .unwrap_or(([0, 0, 0], 0));
    let total = image.pixels.len().max(1);
    let bg = luminance(background);
    Content {
        background,
        distinct_colours: counts.len(),
        not_background: (total - most) as f64 / total as f64,
        contrasting: image
            .pixels
            .iter()
            .filter(|&&p| (luminance(p) - bg).abs() >= 96)
            .count(),
        dark: image.pixels.iter().filter(|&&p| luminance(p) < 96).count(),
    }
}

/// Something was drawn: many colours (anti-aliased text), a real share of non-background
/// pixels, and text-like pixels that stand out from the background.
fn drawn(c: &Content) -> bool {
    c.distinct_colours >= 32 && c.not_background >= 0.01 && c.contrasting >= 500
}

fn screenshot_dir() -> PathBuf {
    // CARGO_TARGET_TMPDIR is target/tmp.
    let tmp = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    tmp.parent().unwrap_or(&tmp).join("gui-screenshots")
}

fn save(image: &Image, name: &str) -> PathBuf {
    let dir = screenshot_dir();
    std::fs::create_dir_all(&dir).expect("screenshot dir");
    let path = dir.join(format!("{name}.png"));
    std::fs::write(&path, xwd::png(image)).expect("write screenshot");
    path
}

/// Starts a window, waits for it, photographs it until it shows something; returns the
/// app (still running), the window's name and geometry, and what the window area shows.
fn show(
    display: &str,
    args: &[&str],
    prefix: &str,
    mode: &str,
) -> (App, String, String, Geometry, Content) {
    let mut app = App::start(display, args);
    let (id, name, geometry) = app.wait_for_window(display, prefix);
    let line = app.startup_line().unwrap_or_default();
    let (first_frame_ms, reported) =
        parse_startup(&line).unwrap_or_else(|| panic!("malformed start-up report {line:?}"));
    assert_eq!(reported, mode, "start-up report {line:?}");
    assert!(
        first_frame_ms > 0 && first_frame_ms < WINDOW_TIMEOUT.as_millis() as u64,
        "implausible first_frame_ms in {line:?}"
    );
    let deadline = Instant::now() + CONTENT_TIMEOUT;
    loop {
        let shot = screenshot(display);
        // The window after its own (possibly changed) geometry, as the screen shows it.
        let (_, now) = window_state(display, &id).unwrap_or_else(|| {
            panic!(
                "window {id} {name:?} vanished; stderr:\n{}",
                app.stderr_text()
            )
        });
        let area = shot.crop(now.x, now.y, now.width, now.height);
        let seen = content(&area);
        if drawn(&seen) || Instant::now() > deadline {
            let path = save(&shot, mode);
            assert!(
                area.width > 0 && area.height > 0,
                "window {id} {name:?} at {now:?} is off the screen; screenshot {}",
                path.display()
            );
            app.assert_running("right after the screenshot");
            assert!(
                drawn(&seen),
                "window {id} {name:?} at {now:?} looks blank after {} s: {seen:?} (needs ≥ 32 \
                 colours, ≥ 1 % non-background, ≥ 500 contrasting pixels); screenshot {}",
                CONTENT_TIMEOUT.as_secs(),
                path.display()
            );
            eprintln!(
                "{mode}: window {id} {name:?} mapped at {geometry:?}, now {now:?}, first frame \
                 {first_frame_ms} ms, {seen:?}; screenshot {}",
                path.display()
            );
            return (app, id, name, now, seen);
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn staff_window_shows_its_screen() {
    let display = test_display();
    let _one_at_a_time = lock_display();
    let (mut app, _id, name, geometry, seen) = show(&display, &["--demo"], "mynalink", "staff");
    assert!(
        !name.starts_with("mynalink kiosk"),
        "the staff window is titled like the kiosk: {name:?}"
    );
    assert!(
        geometry.width >= 640 && geometry.height >= 480,
        "the staff window is too small to work in: {geometry:?}"
    );
    // The staff window is light: dark text on it.
    assert!(
        seen.dark >= 200,
        "no dark text pixels in the staff window: {seen:?}"
    );
    app.assert_running("after the checks");
    app.terminate();
}

#[test]
fn kiosk_window_covers_the_screen() {
    let display = test_display();
    let _one_at_a_time = lock_display();
    let (mut app, id, _name, geometry, _seen) =
        show(&display, &["kiosk", "--demo"], "mynalink kiosk", "kiosk");
    assert_eq!(
        geometry,
        Geometry {
            x: 0,
            y: 0,
            width: SCREEN.0,
            height: SCREEN.1
        },
        "the kiosk must cover the whole {}x{} screen (there is no window manager: the app \
         sizes itself to the monitor)",
        SCREEN.0,
        SCREEN.1
    );
    assert_eq!(
        asks_for_no_decorations(&display, &id),
        Some(true),
        "the kiosk window must ask for no decorations (_MOTIF_WM_HINTS)"
    );
    app.assert_running("after the checks");
    app.terminate();
}

/// The screenshot path works on an X client that is always there (xlogo, from x11-apps):
/// were this to fail, the two tests above would fail for the harness, not for the app.
#[test]
fn harness_sees_a_plain_x_client() {
    let display = test_display();
    let _one_at_a_time = lock_display();
    let mut child = Command::new("xlogo")
        .args(["-geometry", "200x150+40+30", "-fg", "black", "-bg", "white"])
        .env("DISPLAY", &display)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start xlogo (package x11-apps)");
    let deadline = Instant::now() + Duration::from_secs(10);
    let id = loop {
        let found = top_level_windows(&display)
            .into_iter()
            .find(|(id, name)| {
                name == "xlogo" && window_pid(&display, id).is_none_or(|p| p == child.id())
            })
            .map(|(id, _)| id);
        if let Some(id) = found {
            if window_state(&display, &id).is_some_and(|(viewable, _)| viewable) {
                break id;
            }
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("xlogo's window did not appear within 10 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let (_, geometry) = window_state(&display, &id).expect("xlogo's window");
    // xlogo draws after mapping; give it a moment.
    std::thread::sleep(Duration::from_millis(300));
    let shot = screenshot(&display);
    save(&shot, "xlogo");
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!((shot.width, shot.height), SCREEN);
    assert_eq!(
        (geometry.x, geometry.y, geometry.width, geometry.height),
        (40, 30, 200, 150),
        "xlogo asked for 200x150+40+30"
    );
    let area = shot.crop(geometry.x, geometry.y, geometry.width, geometry.height);
    let seen = content(&area);
    assert_eq!(seen.background, [255, 255, 255], "{seen:?}");
    assert!(seen.dark > 1000, "the black logo: {seen:?}");
    assert!(seen.not_background > 0.05, "{seen:?}");
}
