//! The staff window on a real reader: the simulated card served through vpcd to the real
//! pcscd that `cargo xtask test` starts, the backend embedded as in the demo.

use std::time::{Duration, Instant};

use mynalink_card::events::CardEvent;
use mynalink_card::transport::list_readers;
use mynalink_simcard::SimOptions;

use super::super::card::served_card::{reader_worker, ServedCard, READER};
use super::super::staff::{Message, Staff, Step};
use super::*;
use crate::demo::DEMO_LICENSE;

fn card_in_reader() -> bool {
    list_readers()
        .map(|readers| readers.iter().any(|r| r.name == READER && r.card_present))
        .unwrap_or(false)
}

#[test]
fn the_staff_window_links_through_pcscd() {
    let served = ServedCard::insert();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !card_in_reader() {
        assert!(
            Instant::now() < deadline,
            "the card never showed in {READER}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }

    // The demo's backend and terms, but the card comes from the reader.
    let (mut env, dir) = demo(SimOptions::default());
    env.card = reader_worker();
    let mut h = Harness::boot(Staff::new(env), dir);
    // What the reader-event subscription delivers when the card is in.
    h.send(Message::Reader(CardEvent::CardInserted {
        reader: READER.into(),
        atr: Vec::new(),
    }));
    h.assert_shows(&format!("{READER}: カードあり"));

    h.type_into("免許証番号（12桁）", DEMO_LICENSE);
    h.click("次へ（規約）");
    h.click("ご本人が同意しました");
    assert_eq!(h.app.step, Step::Password, "card: {:?}", h.app.turn.card);
    h.assert_shows("残り 5 回");
    h.type_into("ご本人が入力します", "test1234");
    h.click("照合する");
    assert_eq!(h.app.step, Step::Confirm, "card: {:?}", h.app.turn.card);
    h.click("職員が免許記録の氏名・生年月日と照合しました［F4］");
    h.click("署名して送信");
    assert_eq!(h.app.step, Step::Done, "send: {:?}", h.app.turn.send);
    assert!(
        h.app
            .history
            .last()
            .is_some_and(|row| row.outcome == "linked" && row.binding_id.is_some()),
        "{:?}",
        h.app.history
    );
    assert_eq!(
        served.card.lock().map(|c| c.signing_tries()).unwrap_or(0),
        5,
        "the right password costs no try"
    );

    // The card leaves the reader: the next person may start.
    served.remove();
    h.send(Message::Reader(CardEvent::CardRemoved {
        reader: READER.into(),
    }));
    h.click("次の方");
    assert_eq!(h.app.step, Step::Reception);
}
