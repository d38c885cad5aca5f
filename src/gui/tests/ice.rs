//! One `.ice` end-to-end flow per mode, run by `iced_test` against the real program: the
//! demo environment's card worker, backend worker and embedded backend all run.

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;

use iced_test::emulator::{self, Emulator};
use iced_test::futures::futures::channel::mpsc as async_mpsc;
use iced_test::futures::futures::executor;
use iced_test::futures::futures::StreamExt;
use iced_test::Ice;
use mynalink_simcard::SimOptions;

use super::super::staff::HistoryRow;
use super::super::{kiosk_application, staff_application};
use super::demo;
use crate::demo::DEMO_LICENSE;

/// A flow that has not ended by then hangs.
const FLOW_LIMIT: Duration = Duration::from_secs(60);

fn ice_dir(mode: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("src/gui/tests/ice")
        .join(mode)
}

/// Runs `f` on its own thread and fails the test if it does not finish in time (the
/// emulator waits for every task, so a task that never ends would hang the suite).
fn within<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    let (done, result) = mpsc::channel();
    let thread = std::thread::spawn(move || {
        let _ = done.send(f());
    });
    match result.recv_timeout(FLOW_LIMIT) {
        Ok(value) => value,
        Err(mpsc::RecvTimeoutError::Timeout) => panic!("the flow did not end in {FLOW_LIMIT:?}"),
        Err(mpsc::RecvTimeoutError::Disconnected) => match thread.join() {
            Err(panic) => std::panic::resume_unwind(panic),
            Ok(()) => unreachable!("the flow ended without a result"),
        },
    }
}

/// Runs one `.ice` file like `iced_test::run` does, and hands back the program's state.
fn replay<P: iced::Program + 'static>(program: &P, file: &Path) -> P::State {
    let content = std::fs::read_to_string(file).expect("ice file");
    let ice = Ice::parse(&content).expect("valid ice file");
    let (sender, mut receiver) = async_mpsc::channel(1);
    let mut emulator = Emulator::new(sender, program, ice.mode, ice.viewport);
    let mut instructions = ice.instructions.into_iter();
    loop {
        match executor::block_on(receiver.next()).expect("the emulator stopped") {
            emulator::Event::Action(action) => emulator.perform(program, action),
            emulator::Event::Failed(instruction) => {
                panic!("{}: failed at `{instruction}`", file.display())
            }
            emulator::Event::Ready => match instructions.next() {
                Some(instruction) => emulator.run(program, instruction),
                None => break,
            },
        }
    }
    emulator.into_state().0
}

#[test]
fn staff_first_stage_ice() {
    within(|| {
        let (env, _dir) = demo(SimOptions::default());
        iced_test::run(staff_application(env), ice_dir("staff"))
    })
    .expect("staff .ice flow");
}

#[test]
fn kiosk_first_stage_ice() {
    within(|| {
        let (env, _dir) = demo(SimOptions::default());
        iced_test::run(kiosk_application(env), ice_dir("kiosk"))
    })
    .expect("kiosk .ice flow");
}

/// The staff flow again, checking what the screen cannot show exactly: the binding id is
/// random, so the history row is read from the state.
#[test]
fn staff_first_stage_ice_links_the_holder() {
    let history: Vec<HistoryRow> = within(|| {
        let (env, _dir) = demo(SimOptions::default());
        let program = staff_application(env);
        let state = replay(&program, &ice_dir("staff").join("first_stage.ice"));
        state.history
    });
    assert_eq!(history.len(), 1, "{history:?}");
    assert_eq!(history[0].license_number, DEMO_LICENSE);
    assert_eq!(history[0].outcome, "linked");
    assert!(history[0]
        .binding_id
        .as_deref()
        .is_some_and(|id| !id.is_empty()));
}
