//! Unit tests of the deadline, the budget and the metered body.

use super::*;
use std::convert::Infallible;

fn stalled(first: &'static [u8]) -> Body {
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, Infallible>>(1);
    tx.try_send(Ok(Frame::data(Bytes::from_static(first))))
        .unwrap();
    // The sender is kept alive (leaked into the task) so the body never ends.
    tokio::spawn(async move {
        let _tx = tx;
        std::future::pending::<()>().await;
    });
    Body::new(http_body_util::StreamBody::new(
        tokio_stream::wrappers::ReceiverStream::new(rx),
    ))
}

#[tokio::test]
async fn a_stalled_body_fails_at_its_deadline() {
    let body = Body::new(Timed::new(stalled(b"abc"), Duration::from_millis(300)));
    let started = Instant::now();
    let read = body.collect().await;
    assert!(read.is_err());
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(300) && took < Duration::from_secs(2));
}

#[tokio::test]
async fn a_collected_body_holds_budget_until_dropped_and_waiters_are_refused_when_busy() {
    let intake = Intake::new(10, Duration::from_millis(300));
    let h = http::HeaderMap::new();
    let first = intake
        .collect(&h, &mut Body::from("12345678"), 100, false)
        .await
        .unwrap();
    assert_eq!(intake.buffered(), 8);
    let busy = intake
        .collect(&h, &mut Body::from("12345"), 100, false)
        .await;
    assert_eq!(busy.unwrap_err(), Refused::Busy);
    drop(first);
    assert_eq!(intake.buffered(), 0);
    let mut body = Body::from("x".repeat(101));
    let big = intake.collect(&h, &mut body, 100, false);
    assert_eq!(big.await.unwrap_err(), Refused::TooLarge);
}

#[tokio::test]
async fn a_metered_body_waits_for_room_and_gives_it_back_when_dropped() {
    let intake = Intake::new(10, Duration::from_secs(5));
    let a = intake
        .metered(Body::from("12345678"), false)
        .collect()
        .await;
    let a = a.unwrap().to_bytes();
    assert_eq!(&a[..], b"12345678");
    // `a`'s body was dropped once read: its budget is back.
    assert_eq!(intake.buffered(), 0);
    let mut held = intake.metered(stalled(b"1234567"), false);
    assert!(held.frame().await.is_some());
    assert_eq!(intake.buffered(), 7);
    let waiting = tokio::time::timeout(
        Duration::from_millis(300),
        intake.metered(Body::from("12345"), false).collect(),
    );
    assert!(waiting.await.is_err(), "waits while the budget is held");
    // ... but no longer than its deadline.
    let short = Intake {
        deadline: Duration::from_millis(200),
        ..intake.clone()
    };
    let refused = tokio::time::timeout(
        Duration::from_secs(2),
        short.metered(Body::from("12345"), false).collect(),
    );
    assert!(refused.await.expect("not past the deadline").is_err());
    drop(held);
    assert_eq!(intake.buffered(), 0);
}
