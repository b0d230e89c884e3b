//! Chat messages over the FFI: send and edit, each ending with the message sent.

use super::proto;
use super::room::local_room;
use super::{FfiResult, FfiServer};
use crate::ChatMessage;

use proto::ffi_event::Message as Ev;

pub(super) fn to_proto(m: &ChatMessage) -> proto::ChatMessage {
    proto::ChatMessage {
        id: m.id.clone(),
        timestamp: m.timestamp,
        message: m.message.clone(),
        edit_timestamp: m.edit_timestamp,
        deleted: Some(m.deleted),
        generated: Some(m.generated),
    }
}

fn from_proto(m: proto::ChatMessage) -> ChatMessage {
    ChatMessage {
        id: m.id,
        timestamp: m.timestamp,
        edit_timestamp: m.edit_timestamp,
        message: m.message,
        deleted: m.deleted.unwrap_or(false),
        generated: m.generated.unwrap_or(false),
    }
}

fn callback(async_id: u64, result: Result<ChatMessage, String>) -> Ev {
    use proto::send_chat_message_callback::Message as M;
    Ev::ChatMessage(proto::SendChatMessageCallback {
        async_id,
        message: Some(match result {
            Ok(m) => M::ChatMessage(to_proto(&m)),
            Err(e) => M::Error(e),
        }),
    })
}

fn spawn<F>(server: &'static FfiServer, async_id: u64, work: F)
where
    F: std::future::Future<Output = crate::Result<ChatMessage>> + Send + 'static,
{
    server.spawn_async(
        async_id,
        async move {
            let result = work.await.map_err(|e| e.to_string());
            if server.finish(async_id) {
                server.send_event(callback(async_id, result));
            }
        },
        move |m| FfiServer::global().send_event(callback(async_id, Err(m))),
    );
}

pub(super) fn send(
    server: &'static FfiServer,
    r: proto::SendChatMessageRequest,
) -> FfiResult<proto::SendChatMessageResponse> {
    let room = local_room(server, r.local_participant_handle)?;
    let async_id = server.async_id(r.request_async_id);
    spawn(server, async_id, async move {
        room.send_chat_message(&r.message, r.destination_identities)
            .await
    });
    Ok(proto::SendChatMessageResponse { async_id })
}

pub(super) fn edit(
    server: &'static FfiServer,
    r: proto::EditChatMessageRequest,
) -> FfiResult<proto::SendChatMessageResponse> {
    let room = local_room(server, r.local_participant_handle)?;
    let async_id = server.async_id(r.request_async_id);
    let original = from_proto(r.original_message);
    spawn(server, async_id, async move {
        room.edit_chat_message(&r.edit_text, original, r.destination_identities)
            .await
    });
    Ok(proto::SendChatMessageResponse { async_id })
}
