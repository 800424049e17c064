//! One broadcast to N in-process subscribers: what rendering and framing cost, and what
//! each extra subscriber adds. `cargo bench -p turbo-model --bench fanout`.
//!
//! - `render`: the template render plus building the `<turbo-stream>` element, paid once
//!   per broadcast;
//! - `publish/N`: sequence number, JSON frame (once) and one queue push per subscriber,
//!   for N subscribers. Queues are drained outside the timed part.
//!
//! Per-subscriber cost is `(publish/10000 - publish/1) / 9999`.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use serde::Serialize;
use turbo_model::{Action, Content, StreamAction, StreamName, Turbo, context, stream};

#[derive(Serialize)]
struct Message {
    id: i32,
    room_id: i32,
    text: &'static str,
}

const COMPONENT: &str = r#"<li id="message-{{ message.id }}">
  <span class="text">{{ message.text }}</span>
  <form class="delete" method="post" action="/rooms/{{ message.room_id }}/messages/{{ message.id }}/delete">
    <button type="submit">Delete</button>
  </form>
</li>
"#;

fn turbo() -> Turbo {
    Turbo::builder()
        .secret("benchmark secret, at least thirty-two bytes")
        .template("message.html", COMPONENT)
        .queue(1024, 64 * 1024 * 1024)
        .build()
        .expect("benchmark Turbo builds")
}

fn message() -> Message {
    Message {
        id: 42,
        room_id: 1,
        text: "Hello everyone, this is a chat message of ordinary length.",
    }
}

fn render(c: &mut Criterion) {
    let turbo = turbo();
    c.bench_function("render", |b| {
        b.iter(|| {
            let message = message();
            turbo
                .render_action(
                    &StreamAction::append(Content::template("message.html", context! { message }))
                        .target("messages"),
                )
                .expect("renders")
        });
    });
}

fn publish(c: &mut Criterion) {
    let turbo = turbo();
    let message = message();
    let html = turbo
        .render("message.html", &context! { message })
        .expect("renders");
    let room_stream = stream("room:1").expect("valid");
    let room = StreamName::new("room:1").expect("valid");
    let mut group = c.benchmark_group("publish");
    for n in [1usize, 100, 10_000] {
        let mut connections: Vec<_> = (0..n)
            .map(|_| {
                let mut connection = turbo.hub().connect();
                connection.subscribe(&room, None);
                connection
            })
            .collect();
        group.bench_with_input(BenchmarkId::from_parameter(n), &n, |b, _| {
            b.iter_custom(|iterations| {
                let mut timed = Duration::ZERO;
                for _ in 0..iterations {
                    let start = Instant::now();
                    room_stream
                        .action(Action::Append, Some(Content::html(black_box(html.clone()))))
                        .target("messages")
                        .send_with(&turbo)
                        .expect("publishes");
                    timed += start.elapsed();
                    for connection in &mut connections {
                        black_box(connection.try_next_frame());
                    }
                }
                timed
            });
        });
    }
    group.finish();
}

criterion_group!(benches, render, publish);
criterion_main!(benches);
