//! Event subscriptions over the WebSocket.

use super::*;

pub(super) async fn perform(
    ctx: &Context<'_>,
    caller: Option<Identity>,
    action: Action,
) -> Result<Value, DomainError> {
    let state = ctx.state;
    let me = || caller.clone().ok_or(DomainError::InvalidToken);
    match action {
        Action::SubscribeEvents { event_types } => {
            let me = me()?;
            let Some((conn, link)) = ctx.events.clone() else {
                return Err(DomainError::InvalidInput(
                    "events are delivered over the WebSocket (GET /raos): subscribe there".into(),
                ));
            };
            let mut types = Vec::new();
            for wanted in &event_types {
                match EVENT_TYPES.iter().find(|t| **t == wanted.as_str()) {
                    Some(t) => types.push(*t),
                    None => {
                        return Err(DomainError::InvalidInput(format!(
                            "unknown event type {wanted:?}; the types are {}",
                            EVENT_TYPES.join(", ")
                        )));
                    }
                }
            }
            if types.is_empty() {
                return Err(DomainError::InvalidInput(
                    "event_types must name at least one event type".into(),
                ));
            }
            let subscription_id = state
                .inbox
                .ask(|reply| {
                    Command::to(EventsCommand::Subscribe {
                        conn,
                        user_id: me.user_id,
                        event_types: types,
                        sink: event_sink(link),
                        reply,
                    })
                })
                .await?;
            Ok(answers::subscribed(&subscription_id, &event_types))
        }
        other => Err(misrouted(&other)),
    }
}

/// A RaOS connection as the event bus sees it: events go out as `Outgoing::Event`.
fn event_sink(link: crate::bridge::Link<Outgoing>) -> crate::sim::events::EventSink {
    let closed = link.clone();
    crate::sim::events::EventSink {
        send: Box::new(move |bytes| link.send(Outgoing::Event(bytes))),
        closed: Box::new(move || closed.is_closed()),
    }
}
