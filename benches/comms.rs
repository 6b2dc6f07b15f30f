//! The comms fan-out path: one broadcast to 10,000 matching subscriptions — match the
//! topic, encode the frame once, queue the same bytes for every subscriber — plus the
//! subscribers' writers taking it off their queues.
//!
//! `cargo bench --bench comms`

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use ecliptic::bridge::{Link, Outbound};
use ecliptic::protocol::comms as wire;
use ecliptic::sim::comms::{CommsOut, Hub, HubLimits};
use serde_json::json;
use tokio_util::sync::CancellationToken;

fn fan_out(c: &mut Criterion) {
    let subscribers = 10_000u64;
    let mut hub = Hub::new(HubLimits {
        topics_per_connection: 128,
        history_per_topic: 100,
    });
    let mut queues = Vec::new();
    for conn in 0..subscribers {
        let (outbound, rx) = Outbound::bounded(64);
        let link = Link::new(conn, outbound, CancellationToken::new());
        hub.open(conn, format!("c{conn}"), format!("user{conn}"), link);
        let topic = if conn % 2 == 0 {
            "chat.general"
        } else {
            "chat.*"
        };
        hub.subscribe(conn, vec![topic.to_owned()])
            .expect("subscribe");
        queues.push(rx);
    }
    let payload =
        json!({"message": "Hello everyone!", "sender": "user123", "metadata": {"mood": "happy"}});
    let mut group = c.benchmark_group("comms");
    group.throughput(Throughput::Elements(subscribers));
    group.bench_function("fanout_10000_subscribers", |b| {
        b.iter(|| {
            let frame = wire::broadcast("chat.general", &payload, 1_700_000_000_000, "msg_1");
            let delivered = hub.publish("chat.general", &CommsOut::Text(frame));
            for rx in &mut queues {
                while rx.try_recv().is_ok() {}
            }
            delivered
        })
    });
    group.finish();
}

criterion_group!(benches, fan_out);
criterion_main!(benches);
