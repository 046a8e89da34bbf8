//! Change notices through pub/sub: a subscription on a connection of its own, checked with a
//! `PING` now and then, so that a connection that died without a word (a half-open TCP
//! connection after a network failure) ends the feed and the manager subscribes again.

use std::future::ready;
use std::time::Duration;

use futures_util::StreamExt;
use futures_util::stream::{self, BoxStream};
use redis::aio::PubSubSink;
use redis::{Client, Msg, RedisError, RedisResult, Value};

/// How a subscription is timed.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Heartbeat {
    /// How long subscribing may take.
    pub(crate) connect: Duration,
    /// How often the connection is checked.
    pub(crate) every: Duration,
    /// How long an answer to the check may take.
    pub(crate) reply: Duration,
}

/// The messages of a subscription to `channel` through `client`; the stream ends when the
/// connection drops or misses a check.
pub(crate) async fn subscribe(
    client: &Client,
    channel: &str,
    heartbeat: Heartbeat,
) -> RedisResult<BoxStream<'static, Msg>> {
    let subscribing = async {
        let mut pubsub = client.get_async_pubsub().await?;
        pubsub.subscribe(channel).await?;
        Ok::<_, RedisError>(pubsub.split())
    };
    let (sink, messages) = match tokio::time::timeout(heartbeat.connect, subscribing).await {
        Ok(subscribed) => subscribed?,
        Err(_) => return Err(std::io::Error::from(std::io::ErrorKind::TimedOut).into()),
    };
    let ended = messages
        .map(Event::Message)
        .chain(stream::once(ready(Event::Ended)));
    let events = stream::select(ended, checks(sink, heartbeat));
    Ok(events
        .take_while(|event| ready(!matches!(event, Event::Ended)))
        .filter_map(|event| {
            ready(match event {
                Event::Message(message) => Some(message),
                Event::Ended => None,
            })
        })
        .boxed())
}

/// What happens on a subscription.
enum Event {
    Message(Msg),
    /// The connection dropped, or missed a check.
    Ended,
}

/// Yields [`Event::Ended`] once a `PING` on the subscription's connection is not answered in
/// time; nothing before.
fn checks(sink: PubSubSink, heartbeat: Heartbeat) -> impl futures_util::Stream<Item = Event> {
    stream::unfold(Some(sink), move |sink| async move {
        let mut sink = sink?;
        loop {
            tokio::time::sleep(heartbeat.every).await;
            let answered = tokio::time::timeout(heartbeat.reply, sink.ping::<Value>()).await;
            if !matches!(answered, Ok(Ok(_))) {
                tracing::debug!("the change-notice connection missed a check; ending the feed");
                return Some((Event::Ended, None));
            }
        }
    })
}
