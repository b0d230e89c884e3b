//! Data streams over the FFI: writer handles fed in order by one task each, and
//! reader handles the room's event stream hands over.
//!
//! A reader buffers what arrives until the client asks to read it (each piece,
//! or all at once); what waits unread is bounded, past the bound the stream ends
//! with an error instead of growing. A reader handle disposed unread stops the
//! stream at the core: what still comes for it is dropped there.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use parking_lot::Mutex;
use tokio::sync::mpsc;

use super::proto;
use super::room::local_room;
use super::{FfiResult, FfiServer};
use crate::stream::{StreamHeader, StreamKind, StreamOptions, StreamWriter};
use crate::Room;

use proto::ffi_event::Message as Ev;
use proto::room_event::Message as RoomEv;

/// The most bytes a stream keeps for a reader that has not started reading.
pub const UNREAD_BYTES: usize = 16 * 1024 * 1024;

enum Piece {
    Chunk(Vec<u8>),
    /// The trailer's attributes, or why the stream failed.
    End(Result<BTreeMap<String, String>, String>),
}

enum Collect {
    Text,
    Bytes,
    File { directory: String, name: String },
}

enum Mode {
    Waiting {
        pending: Vec<Piece>,
        bytes: usize,
    },
    Incremental,
    All {
        async_id: u64,
        collect: Collect,
        data: Vec<u8>,
    },
    Ended,
}

struct Reader {
    handle: u64,
    kind: StreamKind,
    stream_id: String,
    header: StreamHeader,
    room: Room,
    mode: Mode,
}

type SharedReader = Arc<Mutex<Reader>>;

/// The reader handle a client holds until it asks to read.
pub(crate) struct FfiStreamReader {
    reader: SharedReader,
    consumed: bool,
}

impl Drop for FfiStreamReader {
    fn drop(&mut self) {
        if self.consumed {
            return;
        }
        let mut r = self.reader.lock();
        if !matches!(r.mode, Mode::Ended) {
            r.mode = Mode::Ended;
            r.room.discard_stream(&r.stream_id);
        }
    }
}

impl Reader {
    /// Hands `piece` to whoever reads; `true` once the stream has ended here.
    fn deliver(&mut self, server: &'static FfiServer, piece: Piece) -> bool {
        match &mut self.mode {
            Mode::Ended => true,
            Mode::Waiting { pending, bytes } => {
                if let Piece::Chunk(c) = &piece {
                    *bytes += c.len();
                    if *bytes > UNREAD_BYTES {
                        // Nobody reads: stop the stream rather than grow.
                        self.room.discard_stream(&self.stream_id);
                        let why = format!(
                            "more than {UNREAD_BYTES} bytes arrived before the stream was read"
                        );
                        *pending = vec![Piece::End(Err(why))];
                        return true;
                    }
                }
                let end = matches!(piece, Piece::End(_));
                pending.push(piece);
                end
            }
            Mode::Incremental => {
                let end = matches!(piece, Piece::End(_));
                server.send_event(self.reader_event(piece));
                if end {
                    self.mode = Mode::Ended;
                }
                end
            }
            Mode::All { data, .. } => match piece {
                Piece::Chunk(c) => {
                    data.extend_from_slice(&c);
                    false
                }
                Piece::End(result) => {
                    let Mode::All {
                        async_id,
                        collect,
                        data,
                    } = std::mem::replace(&mut self.mode, Mode::Ended)
                    else {
                        return true;
                    };
                    finish_all(server, async_id, collect, data, result.map(|_| ()));
                    true
                }
            },
        }
    }

    fn reader_event(&self, piece: Piece) -> Ev {
        let handle = self.handle;
        let error = |e: String| proto::StreamError { description: e };
        match (self.kind, piece) {
            (StreamKind::Text, Piece::Chunk(c)) => {
                Ev::TextStreamReaderEvent(proto::TextStreamReaderEvent {
                    reader_handle: handle,
                    detail: Some(proto::text_stream_reader_event::Detail::ChunkReceived(
                        proto::TextStreamReaderChunkReceived {
                            // The core checked every text chunk is UTF-8.
                            content: text(c),
                        },
                    )),
                })
            }
            (StreamKind::Text, Piece::End(r)) => {
                let (error, attributes) = split_end(r, error);
                Ev::TextStreamReaderEvent(proto::TextStreamReaderEvent {
                    reader_handle: handle,
                    detail: Some(proto::text_stream_reader_event::Detail::Eos(
                        proto::TextStreamReaderEos { error, attributes },
                    )),
                })
            }
            (StreamKind::Bytes, Piece::Chunk(c)) => {
                Ev::ByteStreamReaderEvent(proto::ByteStreamReaderEvent {
                    reader_handle: handle,
                    detail: Some(proto::byte_stream_reader_event::Detail::ChunkReceived(
                        proto::ByteStreamReaderChunkReceived { content: c },
                    )),
                })
            }
            (StreamKind::Bytes, Piece::End(r)) => {
                let (error, attributes) = split_end(r, error);
                Ev::ByteStreamReaderEvent(proto::ByteStreamReaderEvent {
                    reader_handle: handle,
                    detail: Some(proto::byte_stream_reader_event::Detail::Eos(
                        proto::ByteStreamReaderEos { error, attributes },
                    )),
                })
            }
        }
    }
}

/// Text the core checked is UTF-8, taken without a copy.
fn text(bytes: Vec<u8>) -> String {
    String::from_utf8(bytes).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

fn split_end(
    r: Result<BTreeMap<String, String>, String>,
    error: impl Fn(String) -> proto::StreamError,
) -> (Option<proto::StreamError>, HashMap<String, String>) {
    match r {
        Ok(attributes) => (None, attributes.into_iter().collect()),
        Err(e) => (Some(error(e)), HashMap::new()),
    }
}

/// Ends a read-all: the content (or the file it was written to), or the error.
fn finish_all(
    server: &'static FfiServer,
    async_id: u64,
    collect: Collect,
    data: Vec<u8>,
    result: Result<(), String>,
) {
    if !server.finish(async_id) {
        return;
    }
    let error = |e: String| proto::StreamError { description: e };
    match collect {
        Collect::Text => {
            use proto::text_stream_reader_read_all_callback::Result as R;
            let result = match result {
                Ok(()) => R::Content(text(data)),
                Err(e) => R::Error(error(e)),
            };
            server.send_event(Ev::TextStreamReaderReadAll(
                proto::TextStreamReaderReadAllCallback {
                    async_id,
                    result: Some(result),
                },
            ));
        }
        Collect::Bytes => {
            use proto::byte_stream_reader_read_all_callback::Result as R;
            let result = match result {
                Ok(()) => R::Content(data),
                Err(e) => R::Error(error(e)),
            };
            server.send_event(Ev::ByteStreamReaderReadAll(
                proto::ByteStreamReaderReadAllCallback {
                    async_id,
                    result: Some(result),
                },
            ));
        }
        Collect::File { directory, name } => {
            use proto::byte_stream_reader_write_to_file_callback::Result as R;
            server.spawn(async move {
                let written = match result {
                    Err(e) => Err(e),
                    Ok(()) => tokio::task::spawn_blocking(move || {
                        let path = std::path::Path::new(&directory).join(&name);
                        std::fs::write(&path, &data)
                            .map(|_| path.to_string_lossy().into_owned())
                            .map_err(|e| format!("writing {}: {e}", path.display()))
                    })
                    .await
                    .unwrap_or_else(|e| Err(e.to_string())),
                };
                let result = match written {
                    Ok(path) => R::FilePath(path),
                    Err(e) => R::Error(error(e)),
                };
                server.send_event(Ev::ByteStreamReaderWriteToFile(
                    proto::ByteStreamReaderWriteToFileCallback {
                        async_id,
                        result: Some(result),
                    },
                ));
            });
        }
    }
}

pub(super) fn text_info(h: &StreamHeader) -> proto::TextStreamInfo {
    let text = match &h.content_header {
        Some(livekit_core::packet::data_stream::header::ContentHeader::TextHeader(t)) => t.clone(),
        _ => Default::default(),
    };
    proto::TextStreamInfo {
        stream_id: h.stream_id.clone(),
        timestamp: h.timestamp,
        mime_type: h.mime_type.clone(),
        topic: h.topic.clone(),
        total_length: h.total_length,
        attributes: h.attributes.clone().into_iter().collect(),
        operation_type: text.operation_type,
        version: Some(text.version),
        reply_to_stream_id: Some(text.reply_to_stream_id),
        attached_stream_ids: text.attached_stream_ids,
        generated: Some(text.generated),
        encryption_type: proto::EncryptionType::None as i32,
    }
}

pub(super) fn byte_info(h: &StreamHeader) -> proto::ByteStreamInfo {
    let name = match &h.content_header {
        Some(livekit_core::packet::data_stream::header::ContentHeader::ByteHeader(b)) => {
            b.name.clone()
        }
        _ => String::new(),
    };
    proto::ByteStreamInfo {
        stream_id: h.stream_id.clone(),
        timestamp: h.timestamp,
        mime_type: h.mime_type.clone(),
        topic: h.topic.clone(),
        total_length: h.total_length,
        attributes: h.attributes.clone().into_iter().collect(),
        name,
        encryption_type: proto::EncryptionType::None as i32,
    }
}

/// The incoming streams of one room, kept by its event forwarder.
#[derive(Default)]
pub(super) struct Incoming {
    readers: HashMap<String, SharedReader>,
}

impl Incoming {
    /// A stream began: its reader handle goes to the client in the room event.
    pub(super) fn opened(
        &mut self,
        server: &'static FfiServer,
        room: &Room,
        sender: String,
        kind: StreamKind,
        header: StreamHeader,
    ) -> RoomEv {
        let reader = Arc::new(Mutex::new(Reader {
            handle: 0,
            kind,
            stream_id: header.stream_id.clone(),
            header: header.clone(),
            room: room.clone(),
            mode: Mode::Waiting {
                pending: Vec::new(),
                bytes: 0,
            },
        }));
        let handle = server.insert_handle(FfiStreamReader {
            reader: reader.clone(),
            consumed: false,
        });
        reader.lock().handle = handle;
        self.readers.insert(header.stream_id.clone(), reader);
        let owned = proto::FfiOwnedHandle { id: handle };
        match kind {
            StreamKind::Text => RoomEv::TextStreamOpened(proto::TextStreamOpened {
                reader: proto::OwnedTextStreamReader {
                    handle: owned,
                    info: text_info(&header),
                },
                participant_identity: sender,
            }),
            StreamKind::Bytes => RoomEv::ByteStreamOpened(proto::ByteStreamOpened {
                reader: proto::OwnedByteStreamReader {
                    handle: owned,
                    info: byte_info(&header),
                },
                participant_identity: sender,
            }),
        }
    }

    pub(super) fn chunk(&mut self, server: &'static FfiServer, id: &str, content: Vec<u8>) {
        let ended = match self.readers.get(id) {
            Some(r) => r.lock().deliver(server, Piece::Chunk(content)),
            None => return,
        };
        if ended && self.ended(id) {
            self.readers.remove(id);
        }
    }

    pub(super) fn end(
        &mut self,
        server: &'static FfiServer,
        id: &str,
        result: Result<BTreeMap<String, String>, String>,
    ) {
        if let Some(r) = self.readers.remove(id) {
            r.lock().deliver(server, Piece::End(result));
        }
    }

    /// A stream that stopped here early (overflow) waits only for its reader.
    fn ended(&self, id: &str) -> bool {
        self.readers
            .get(id)
            .is_some_and(|r| !matches!(r.lock().mode, Mode::Waiting { .. }))
    }
}

/// Takes the reader handle out of the table: the client now reads it.
fn consume(server: &'static FfiServer, handle: u64) -> FfiResult<SharedReader> {
    let mut h = server.take_handle::<FfiStreamReader>(handle)?;
    h.consumed = true;
    Ok(h.reader.clone())
}

fn start(server: &'static FfiServer, reader: &SharedReader, mode: Mode) {
    let mut r = reader.lock();
    let pending = match std::mem::replace(&mut r.mode, mode) {
        Mode::Waiting { pending, .. } => pending,
        _ => Vec::new(),
    };
    for piece in pending {
        r.deliver(server, piece);
    }
}

pub(super) fn read_incremental(server: &'static FfiServer, handle: u64) -> FfiResult<()> {
    let reader = consume(server, handle)?;
    start(server, &reader, Mode::Incremental);
    Ok(())
}

fn read_all(
    server: &'static FfiServer,
    handle: u64,
    requested: Option<u64>,
    collect: impl FnOnce(&StreamHeader) -> Collect,
) -> FfiResult<u64> {
    let reader = consume(server, handle)?;
    let async_id = server.async_id(requested);
    server.register(async_id);
    let collect = collect(&reader.lock().header);
    start(
        server,
        &reader,
        Mode::All {
            async_id,
            collect,
            data: Vec::new(),
        },
    );
    Ok(async_id)
}

pub(super) fn text_read_all(
    server: &'static FfiServer,
    r: proto::TextStreamReaderReadAllRequest,
) -> FfiResult<proto::TextStreamReaderReadAllResponse> {
    let async_id = read_all(server, r.reader_handle, r.request_async_id, |_| {
        Collect::Text
    })?;
    Ok(proto::TextStreamReaderReadAllResponse { async_id })
}

pub(super) fn byte_read_all(
    server: &'static FfiServer,
    r: proto::ByteStreamReaderReadAllRequest,
) -> FfiResult<proto::ByteStreamReaderReadAllResponse> {
    let async_id = read_all(server, r.reader_handle, r.request_async_id, |_| {
        Collect::Bytes
    })?;
    Ok(proto::ByteStreamReaderReadAllResponse { async_id })
}

pub(super) fn byte_write_to_file(
    server: &'static FfiServer,
    r: proto::ByteStreamReaderWriteToFileRequest,
) -> FfiResult<proto::ByteStreamReaderWriteToFileResponse> {
    let directory = r
        .directory
        .filter(|d| !d.is_empty())
        .unwrap_or_else(|| std::env::temp_dir().to_string_lossy().into_owned());
    let override_name = r.name_override.filter(|n| !n.is_empty());
    let async_id = read_all(server, r.reader_handle, r.request_async_id, |h| {
        let name = override_name.unwrap_or_else(|| byte_info(h).name);
        // Only a file name: the stream's sender must not pick the directory.
        let name = std::path::Path::new(&name)
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| h.stream_id.clone());
        Collect::File { directory, name }
    })?;
    Ok(proto::ByteStreamReaderWriteToFileResponse { async_id })
}

// ---- sending ----

fn text_options(o: proto::StreamTextOptions) -> StreamOptions {
    StreamOptions {
        topic: o.topic,
        attributes: o.attributes,
        destination_identities: o.destination_identities,
        id: o.id.filter(|i| !i.is_empty()),
        mime_type: None,
        total_length: None,
        name: None,
        text: livekit_core::packet::data_stream::TextHeader {
            operation_type: o.operation_type.unwrap_or(0),
            version: o.version.unwrap_or(0),
            reply_to_stream_id: o.reply_to_stream_id.unwrap_or_default(),
            attached_stream_ids: o.attached_stream_ids,
            generated: o.generated.unwrap_or(false),
        },
    }
}

fn byte_options(o: proto::StreamByteOptions, default_name: &str) -> StreamOptions {
    StreamOptions {
        topic: o.topic,
        attributes: o.attributes,
        destination_identities: o.destination_identities,
        id: o.id.filter(|i| !i.is_empty()),
        mime_type: o.mime_type.filter(|m| !m.is_empty()),
        total_length: o.total_length,
        name: Some(
            o.name
                .filter(|n| !n.is_empty())
                .unwrap_or_else(|| default_name.to_owned()),
        ),
        text: Default::default(),
    }
}

fn stream_error(e: impl std::fmt::Display) -> proto::StreamError {
    proto::StreamError {
        description: e.to_string(),
    }
}

/// Runs a one-shot send of request `async_id`; `callback` makes its event.
fn spawn_send<F>(
    server: &'static FfiServer,
    async_id: u64,
    work: F,
    callback: fn(u64, Result<StreamHeader, String>) -> Ev,
) where
    F: std::future::Future<Output = Result<StreamHeader, String>> + Send + 'static,
{
    server.spawn_async(
        async_id,
        async move {
            let result = work.await;
            if server.finish(async_id) {
                server.send_event(callback(async_id, result));
            }
        },
        move |m| FfiServer::global().send_event(callback(async_id, Err(m))),
    );
}

pub(super) fn send_text(
    server: &'static FfiServer,
    r: proto::StreamSendTextRequest,
) -> FfiResult<proto::StreamSendTextResponse> {
    let room = local_room(server, r.local_participant_handle)?;
    let async_id = server.async_id(r.request_async_id);
    let options = text_options(r.options);
    let text = r.text;
    spawn_send(
        server,
        async_id,
        async move {
            room.stream_send(text.as_bytes(), options)
                .await
                .map_err(|e| e.to_string())
        },
        |async_id, r| {
            use proto::stream_send_text_callback::Result as R;
            Ev::SendText(proto::StreamSendTextCallback {
                async_id,
                result: Some(match r {
                    Ok(h) => R::Info(text_info(&h)),
                    Err(e) => R::Error(stream_error(e)),
                }),
            })
        },
    );
    Ok(proto::StreamSendTextResponse { async_id })
}

fn byte_sent(async_id: u64, r: Result<StreamHeader, String>) -> Ev {
    use proto::stream_send_bytes_callback::Result as R;
    Ev::SendBytes(proto::StreamSendBytesCallback {
        async_id,
        result: Some(match r {
            Ok(h) => R::Info(byte_info(&h)),
            Err(e) => R::Error(stream_error(e)),
        }),
    })
}

pub(super) fn send_bytes(
    server: &'static FfiServer,
    r: proto::StreamSendBytesRequest,
) -> FfiResult<proto::StreamSendBytesResponse> {
    let room = local_room(server, r.local_participant_handle)?;
    let async_id = server.async_id(r.request_async_id);
    let options = byte_options(r.options, "unknown");
    let bytes = r.bytes;
    spawn_send(
        server,
        async_id,
        async move {
            room.stream_send(&bytes, options)
                .await
                .map_err(|e| e.to_string())
        },
        byte_sent,
    );
    Ok(proto::StreamSendBytesResponse { async_id })
}

pub(super) fn send_file(
    server: &'static FfiServer,
    r: proto::StreamSendFileRequest,
) -> FfiResult<proto::StreamSendFileResponse> {
    let room = local_room(server, r.local_participant_handle)?;
    let async_id = server.async_id(r.request_async_id);
    let path = std::path::PathBuf::from(&r.file_path);
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "unknown".to_owned());
    let options = byte_options(r.options, &file_name);
    spawn_send(
        server,
        async_id,
        async move {
            let bytes = tokio::task::spawn_blocking(move || std::fs::read(&path))
                .await
                .map_err(|e| e.to_string())?
                .map_err(|e| format!("reading {}: {e}", r.file_path))?;
            room.stream_send(&bytes, options)
                .await
                .map_err(|e| e.to_string())
        },
        |async_id, r| {
            use proto::stream_send_file_callback::Result as R;
            Ev::SendFile(proto::StreamSendFileCallback {
                async_id,
                result: Some(match r {
                    Ok(h) => R::Info(byte_info(&h)),
                    Err(e) => R::Error(stream_error(e)),
                }),
            })
        },
    );
    Ok(proto::StreamSendFileResponse { async_id })
}

enum Op {
    Write(Vec<u8>, u64),
    Close(String, HashMap<String, String>, u64),
}

/// A writer handle: its requests go, in order, to the one task that owns the
/// stream. Dropped unclosed, the stream ends with a trailer saying so.
pub(crate) struct FfiStreamWriter {
    ops: mpsc::UnboundedSender<Op>,
}

/// The events of a writer: written and closed callbacks, text or bytes.
#[derive(Clone, Copy)]
struct WriterEvents {
    written: fn(u64, Option<proto::StreamError>) -> Ev,
    closed: fn(u64, Option<proto::StreamError>) -> Ev,
}

const TEXT_WRITER: WriterEvents = WriterEvents {
    written: |async_id, error| {
        Ev::TextStreamWriterWrite(proto::TextStreamWriterWriteCallback { async_id, error })
    },
    closed: |async_id, error| {
        Ev::TextStreamWriterClose(proto::TextStreamWriterCloseCallback { async_id, error })
    },
};

const BYTE_WRITER: WriterEvents = WriterEvents {
    written: |async_id, error| {
        Ev::ByteStreamWriterWrite(proto::ByteStreamWriterWriteCallback { async_id, error })
    },
    closed: |async_id, error| {
        Ev::ByteStreamWriterClose(proto::ByteStreamWriterCloseCallback { async_id, error })
    },
};

async fn run_writer(
    server: &'static FfiServer,
    writer: StreamWriter,
    mut ops: mpsc::UnboundedReceiver<Op>,
    events: WriterEvents,
) {
    while let Some(op) = ops.recv().await {
        match op {
            Op::Write(data, async_id) => {
                let result = writer.write(&data).await;
                if server.finish(async_id) {
                    server.send_event((events.written)(async_id, result.err().map(stream_error)));
                }
            }
            Op::Close(reason, attributes, async_id) => {
                let result = writer.close(&reason, attributes).await;
                if server.finish(async_id) {
                    server.send_event((events.closed)(async_id, result.err().map(stream_error)));
                }
                // Whatever was queued after the close fails.
                ops.close();
                while let Some(op) = ops.recv().await {
                    let (Op::Write(_, id) | Op::Close(_, _, id)) = op;
                    if server.finish(id) {
                        let e = Some(stream_error("the stream writer is closed"));
                        server.send_event((events.written)(id, e));
                    }
                }
                return;
            }
        }
    }
}

fn open(
    server: &'static FfiServer,
    handle: u64,
    requested: Option<u64>,
    options: StreamOptions,
    events: WriterEvents,
    opened: fn(u64, Result<(u64, StreamHeader), String>) -> Ev,
) -> FfiResult<u64> {
    let room = local_room(server, handle)?;
    let async_id = server.async_id(requested);
    server.spawn_async(
        async_id,
        async move {
            let result = room.stream_open(options).await;
            if !server.finish(async_id) {
                return;
            }
            let result = result.map(|writer| {
                let header = writer.header().clone();
                let (tx, rx) = mpsc::unbounded_channel();
                let id = server.insert_handle(FfiStreamWriter { ops: tx });
                server.spawn(run_writer(server, writer, rx, events));
                (id, header)
            });
            server.send_event(opened(async_id, result.map_err(|e| e.to_string())));
        },
        move |m| FfiServer::global().send_event(opened(async_id, Err(m))),
    );
    Ok(async_id)
}

pub(super) fn text_stream_open(
    server: &'static FfiServer,
    r: proto::TextStreamOpenRequest,
) -> FfiResult<proto::TextStreamOpenResponse> {
    let async_id = open(
        server,
        r.local_participant_handle,
        r.request_async_id,
        text_options(r.options),
        TEXT_WRITER,
        |async_id, r| {
            use proto::text_stream_open_callback::Result as R;
            Ev::TextStreamOpen(proto::TextStreamOpenCallback {
                async_id,
                result: Some(match r {
                    Ok((id, h)) => R::Writer(proto::OwnedTextStreamWriter {
                        handle: proto::FfiOwnedHandle { id },
                        info: text_info(&h),
                    }),
                    Err(e) => R::Error(stream_error(e)),
                }),
            })
        },
    )?;
    Ok(proto::TextStreamOpenResponse { async_id })
}

pub(super) fn byte_stream_open(
    server: &'static FfiServer,
    r: proto::ByteStreamOpenRequest,
) -> FfiResult<proto::ByteStreamOpenResponse> {
    let async_id = open(
        server,
        r.local_participant_handle,
        r.request_async_id,
        byte_options(r.options, "unknown"),
        BYTE_WRITER,
        |async_id, r| {
            use proto::byte_stream_open_callback::Result as R;
            Ev::ByteStreamOpen(proto::ByteStreamOpenCallback {
                async_id,
                result: Some(match r {
                    Ok((id, h)) => R::Writer(proto::OwnedByteStreamWriter {
                        handle: proto::FfiOwnedHandle { id },
                        info: byte_info(&h),
                    }),
                    Err(e) => R::Error(stream_error(e)),
                }),
            })
        },
    )?;
    Ok(proto::ByteStreamOpenResponse { async_id })
}

/// Queues `op` on writer `handle`; a writer already closed answers at once.
fn queue(
    server: &'static FfiServer,
    handle: u64,
    requested: Option<u64>,
    op: impl FnOnce(u64) -> Op,
    failed: fn(u64, Option<proto::StreamError>) -> Ev,
) -> FfiResult<u64> {
    let async_id = server.async_id(requested);
    let op = op(async_id);
    // A close consumes the writer handle, as in livekit-ffi; a write borrows it.
    let ops = match op {
        Op::Close(..) => server.take_handle::<FfiStreamWriter>(handle)?.ops.clone(),
        Op::Write(..) => server.with_handle::<FfiStreamWriter, _>(handle, |w| w.ops.clone())?,
    };
    server.register(async_id);
    if ops.send(op).is_err() && server.finish(async_id) {
        server.send_event(failed(
            async_id,
            Some(stream_error("the stream writer is closed")),
        ));
    }
    Ok(async_id)
}

pub(super) fn text_stream_write(
    server: &'static FfiServer,
    r: proto::TextStreamWriterWriteRequest,
) -> FfiResult<proto::TextStreamWriterWriteResponse> {
    let text = r.text;
    let async_id = queue(
        server,
        r.writer_handle,
        r.request_async_id,
        move |id| Op::Write(text.into_bytes(), id),
        TEXT_WRITER.written,
    )?;
    Ok(proto::TextStreamWriterWriteResponse { async_id })
}

pub(super) fn byte_stream_write(
    server: &'static FfiServer,
    r: proto::ByteStreamWriterWriteRequest,
) -> FfiResult<proto::ByteStreamWriterWriteResponse> {
    let bytes = r.bytes;
    let async_id = queue(
        server,
        r.writer_handle,
        r.request_async_id,
        move |id| Op::Write(bytes, id),
        BYTE_WRITER.written,
    )?;
    Ok(proto::ByteStreamWriterWriteResponse { async_id })
}

pub(super) fn text_stream_close(
    server: &'static FfiServer,
    r: proto::TextStreamWriterCloseRequest,
) -> FfiResult<proto::TextStreamWriterCloseResponse> {
    let (reason, attrs) = (r.reason.unwrap_or_default(), r.attributes);
    let async_id = queue(
        server,
        r.writer_handle,
        r.request_async_id,
        move |id| Op::Close(reason, attrs, id),
        TEXT_WRITER.closed,
    )?;
    Ok(proto::TextStreamWriterCloseResponse { async_id })
}

pub(super) fn byte_stream_close(
    server: &'static FfiServer,
    r: proto::ByteStreamWriterCloseRequest,
) -> FfiResult<proto::ByteStreamWriterCloseResponse> {
    let (reason, attrs) = (r.reason.unwrap_or_default(), r.attributes);
    let async_id = queue(
        server,
        r.writer_handle,
        r.request_async_id,
        move |id| Op::Close(reason, attrs, id),
        BYTE_WRITER.closed,
    )?;
    Ok(proto::ByteStreamWriterCloseResponse { async_id })
}
