//! Change notices through pub/sub: a subscription on a connection of its own, checked with a
//! `PING` now and then, so that a connection that died without a word (a half-open TCP
//! connection after a network failure) ends the feed and the manager subscribes again.

use futures_util::StreamExt;
use futures_util::stream::BoxStream;
use redis::aio::PubSubSink;
use redis::{Client, Msg, RedisError, RedisResult, Value};

use crate::connection::Timeouts;

/// The messages of a subscription to `channel` through `client`; the stream ends when the
/// connection drops or misses a check.
pub(crate) async fn subscribe(
    client: &Client,
    channel: &str,
    timeouts: Timeouts,
) -> RedisResult<BoxStream<'static, Msg>> {
    let subscribing = async {
        let mut pubsub = client.get_async_pubsub().await?;
        pubsub.subscribe(channel).await?;
        Ok::<_, RedisError>(pubsub.split())
    };
    let (sink, messages) = match tokio::time::timeout(timeouts.connect, subscribing).await {
        Ok(subscribed) => subscribed?,
        Err(_) => return Err(std::io::Error::from(std::io::ErrorKind::TimedOut).into()),
    };
    Ok(messages.take_until(missed_check(sink, timeouts)).boxed())
}

/// Completes once a `PING` on the subscription's connection is not answered in time.
async fn missed_check(mut sink: PubSubSink, timeouts: Timeouts) {
    loop {
        tokio::time::sleep(timeouts.heartbeat).await;
        let answered = tokio::time::timeout(timeouts.response, sink.ping::<Value>()).await;
        if !matches!(answered, Ok(Ok(_))) {
            tracing::debug!("the change-notice connection missed a check; ending the feed");
            return;
        }
    }
}
