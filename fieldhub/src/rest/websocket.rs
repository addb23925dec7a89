//! MQTT over WebSockets on the HTTPS listener, as IoT Hub serves it for networks that let
//! nothing out but 443: `GET /$iothub/websocket` upgraded with the subprotocol `mqtt`, then
//! the same MQTT session as on 8883 — same CONNECT and SAS checks, same topics, same limits,
//! and one session per device id across both listeners (a WebSocket CONNECT replaces an 8883
//! connection of the same device, and the reverse), as on IoT Hub
//! (<https://learn.microsoft.com/azure/iot/iot-mqtt-connect-to-iot-hub#using-the-mqtt-protocol-directly-as-a-device>).
//! Each binary WebSocket message carries MQTT bytes; MQTT packets may span messages.

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use bytes::{Buf, Bytes};
use futures::{Sink, Stream};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::hub::Hub;

/// The MQTT-over-WebSockets route.
pub(crate) fn routes() -> Router<Hub> {
    Router::new().route("/$iothub/websocket", get(upgrade))
}

async fn upgrade(State(hub): State<Hub>, headers: HeaderMap, ws: WebSocketUpgrade) -> Response {
    // IoT Hub speaks only MQTT here; a client that does not ask for it gets nothing else.
    let asks_mqtt = headers
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|p| p.trim().eq_ignore_ascii_case("mqtt"));
    if !asks_mqtt {
        return (
            StatusCode::BAD_REQUEST,
            "the WebSocket endpoint carries MQTT: ask for the subprotocol \"mqtt\"",
        )
            .into_response();
    }
    ws.protocols(["mqtt"])
        .on_upgrade(move |socket| crate::mqtt::serve_stream(hub, WsIo::new(socket)))
}

/// A WebSocket as the byte stream the MQTT connection code reads and writes.
struct WsIo {
    ws: WebSocket,
    /// The rest of the last binary message not read yet.
    pending: Bytes,
}

impl WsIo {
    fn new(ws: WebSocket) -> Self {
        WsIo {
            ws,
            pending: Bytes::new(),
        }
    }
}

fn to_io(e: axum::Error) -> io::Error {
    io::Error::other(e)
}

impl AsyncRead for WsIo {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        loop {
            if !self.pending.is_empty() {
                let n = self.pending.len().min(buf.remaining());
                buf.put_slice(&self.pending[..n]);
                self.pending.advance(n);
                return Poll::Ready(Ok(()));
            }
            match ready!(Pin::new(&mut self.ws).poll_next(cx)) {
                Some(Ok(Message::Binary(b))) => self.pending = b,
                // Pings are answered by the WebSocket layer; text is not MQTT.
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                Some(Ok(Message::Text(_))) => {
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "text frame on the MQTT WebSocket",
                    )))
                }
                // Close, or the end of the stream: end of file for MQTT.
                Some(Ok(Message::Close(_))) | None => return Poll::Ready(Ok(())),
                Some(Err(e)) => return Poll::Ready(Err(to_io(e))),
            }
        }
    }
}

impl AsyncWrite for WsIo {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        ready!(Pin::new(&mut self.ws).poll_ready(cx)).map_err(to_io)?;
        Pin::new(&mut self.ws)
            .start_send(Message::Binary(Bytes::copy_from_slice(data)))
            .map_err(to_io)?;
        Poll::Ready(Ok(data.len()))
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.ws).poll_flush(cx).map_err(to_io)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.ws).poll_close(cx).map_err(to_io)
    }
}
