//! RPC requests over the FFI: calls out, registered methods, and answers to the
//! invocations the room's event stream hands over.

use std::time::Duration;

use super::proto;
use super::room::local_room;
use super::{FfiResult, FfiServer};
use crate::rpc::{PerformRpc, RpcError, RpcInvocation};

use proto::ffi_event::Message as Ev;

fn error_of(e: RpcError) -> proto::RpcError {
    proto::RpcError {
        code: e.code,
        message: e.message,
        data: (!e.data.is_empty()).then_some(e.data),
    }
}

pub(super) fn perform(
    server: &'static FfiServer,
    r: proto::PerformRpcRequest,
) -> FfiResult<proto::PerformRpcResponse> {
    let room = local_room(server, r.local_participant_handle)?;
    let async_id = server.async_id(r.request_async_id);
    let mut call = PerformRpc::new(&r.destination_identity, &r.method, &r.payload);
    if let Some(ms) = r.response_timeout_ms {
        call.response_timeout = Duration::from_millis(ms.into());
    }
    if let Some(ms) = r.max_round_trip_latency_ms {
        call.max_round_trip_latency = Duration::from_millis(ms.into());
    }
    let callback = move |result: Result<String, RpcError>| {
        let (payload, error) = match result {
            Ok(p) => (Some(p), None),
            Err(e) => (None, Some(error_of(e))),
        };
        Ev::PerformRpc(proto::PerformRpcCallback {
            async_id,
            payload,
            error,
        })
    };
    server.spawn_async(
        async_id,
        async move {
            let result = room.perform_rpc(call).await;
            if server.finish(async_id) {
                server.send_event(callback(result));
            }
        },
        move |m| {
            let e = RpcError::with_data(crate::RpcErrorCode::SendFailed, m);
            FfiServer::global().send_event(callback(Err(e)))
        },
    );
    Ok(proto::PerformRpcResponse { async_id })
}

pub(super) fn register(
    server: &'static FfiServer,
    r: proto::RegisterRpcMethodRequest,
) -> FfiResult<proto::RegisterRpcMethodResponse> {
    local_room(server, r.local_participant_handle)?.register_rpc_method(&r.method);
    Ok(proto::RegisterRpcMethodResponse {})
}

pub(super) fn unregister(
    server: &'static FfiServer,
    r: proto::UnregisterRpcMethodRequest,
) -> FfiResult<proto::UnregisterRpcMethodResponse> {
    local_room(server, r.local_participant_handle)?.unregister_rpc_method(&r.method);
    Ok(proto::UnregisterRpcMethodResponse {})
}

pub(super) fn respond(
    server: &'static FfiServer,
    r: proto::RpcMethodInvocationResponseRequest,
) -> FfiResult<proto::RpcMethodInvocationResponseResponse> {
    let room = local_room(server, r.local_participant_handle)?;
    let answer = match r.error {
        Some(e) => Err(RpcError {
            code: e.code,
            message: e.message,
            data: e.data.unwrap_or_default(),
        }),
        None => Ok(r.payload.unwrap_or_default()),
    };
    let error = (!room.respond_rpc(r.invocation_id, answer))
        .then(|| format!("no pending RPC invocation {}", r.invocation_id));
    Ok(proto::RpcMethodInvocationResponseResponse { error })
}

/// The FFI event of an invocation of one of our methods.
pub(super) fn invocation(local_handle: u64, i: RpcInvocation) -> Ev {
    Ev::RpcMethodInvocation(proto::RpcMethodInvocationEvent {
        local_participant_handle: local_handle,
        invocation_id: i.id,
        method: i.method,
        request_id: i.request_id,
        caller_identity: i.caller,
        payload: i.payload,
        response_timeout_ms: i.response_timeout_ms,
    })
}
