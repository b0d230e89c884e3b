/*
 * device_demo: the device demo app (the same as livekit-sim-device) written
 * against the ESP32 SDK's C API, built for a host.
 *
 *     device_demo URL TOKEN
 *
 * RPC method "echo" answers with its payload; a text stream received on topic
 * "chat" is sent back to its sender on "chat-echo". What happens is printed on
 * stdout, one tab-separated line per event; commands come on stdin, one a line:
 *
 *     rpc DESTINATION METHOD PAYLOAD   call a method of another participant
 *     send TOPIC TEXT                  send a text stream to everyone
 *     data TOPIC TEXT                  send reliable user data to everyone
 *     close                            leave the room
 *     quit                             exit
 *
 * Build (see livekit-esp32/README.md):
 *     gcc -std=c11 -Wall -Wextra -Werror -I$T/include device_demo.c \
 *         $T/liblivekit_esp32.a -lpthread -ldl -lm -lrt -lutil -o device_demo
 */
#define _POSIX_C_SOURCE 200809L

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "livekit.h"

/* Callbacks come on the library's threads while main reads stdin: one line at a
 * time on stdout. */
static pthread_mutex_t out_lock = PTHREAD_MUTEX_INITIALIZER;

static void say(const char *fmt, ...)
{
    va_list args;
    va_start(args, fmt);
    pthread_mutex_lock(&out_lock);
    vprintf(fmt, args);
    putchar('\n');
    fflush(stdout);
    pthread_mutex_unlock(&out_lock);
    va_end(args);
}

/* Set before connecting, read by the callbacks afterwards. */
static livekit_room_handle_t room;

/* ---- received text streams, put together until they close ---- */

#define MAX_TEXTS 8

typedef struct {
    char *stream_id; /* NULL: a free slot */
    char *sender;
    char *topic;
    char *text;
    size_t len;
} text_t;

/* The callbacks of one room come one at a time, so the slots need no lock. */
static text_t texts[MAX_TEXTS];

static text_t *text_find(const char *stream_id)
{
    for (int i = 0; i < MAX_TEXTS; i++) {
        if (texts[i].stream_id != NULL && strcmp(texts[i].stream_id, stream_id) == 0) {
            return &texts[i];
        }
    }
    return NULL;
}

static void text_free(text_t *t)
{
    free(t->stream_id);
    free(t->sender);
    free(t->topic);
    free(t->text);
    memset(t, 0, sizeof(*t));
}

/* Sends `text` as a text stream on `topic`, to `to` (or everyone when NULL). */
static livekit_err_t send_text(const char *topic, const char *text, const char *to)
{
    const char *destinations[1] = { to };
    livekit_data_stream_options_t options = {
        .topic = topic,
        .is_text = true,
        .total_length = strlen(text),
        .has_total_length = true,
        .destination_identities = to != NULL ? destinations : NULL,
        .destination_identities_count = to != NULL ? 1 : 0,
    };
    livekit_data_stream_handle_t stream;
    livekit_err_t err = livekit_room_data_stream_open(room, &options, &stream);
    if (err != LIVEKIT_ERR_NONE) {
        return err;
    }
    err = livekit_room_data_stream_write(room, stream, (const uint8_t *)text, strlen(text));
    livekit_err_t closed = livekit_room_data_stream_close(room, stream);
    return err != LIVEKIT_ERR_NONE ? err : closed;
}

static void on_stream_open(const livekit_data_stream_header_t *header, void *ctx)
{
    (void)ctx;
    say("stream-opened\t%s\t%s\t%s", header->stream_id, header->topic, header->sender_identity);
    for (int i = 0; i < MAX_TEXTS; i++) {
        if (texts[i].stream_id == NULL) {
            texts[i].stream_id = strdup(header->stream_id);
            texts[i].sender = strdup(header->sender_identity);
            texts[i].topic = strdup(header->topic);
            texts[i].text = calloc(1, 1);
            texts[i].len = 0;
            return;
        }
    }
    say("error\tstream\ttoo many streams at once");
}

static void on_stream_recv(const livekit_data_stream_chunk_t *chunk, void *ctx)
{
    (void)ctx;
    text_t *t = text_find(chunk->stream_id);
    if (t == NULL || t->text == NULL) {
        return;
    }
    char *grown = realloc(t->text, t->len + chunk->content_size + 1);
    if (grown == NULL) {
        return;
    }
    memcpy(grown + t->len, chunk->content, chunk->content_size);
    t->len += chunk->content_size;
    grown[t->len] = '\0';
    t->text = grown;
}

static void on_stream_close(const livekit_data_stream_trailer_t *trailer, void *ctx)
{
    (void)ctx;
    text_t *t = text_find(trailer->stream_id);
    if (t == NULL) {
        return;
    }
    if (trailer->reason[0] != '\0') {
        say("stream-failed\t%s\t%s", trailer->stream_id, trailer->reason);
    } else {
        say("text\t%s\t%s\t%s", t->topic, t->sender, t->text);
        if (strcmp(t->topic, "chat") == 0) {
            livekit_err_t err = send_text("chat-echo", t->text, t->sender);
            if (err != LIVEKIT_ERR_NONE) {
                say("error\techo\t%d", (int)err);
            }
        }
    }
    text_free(t);
}

/* ---- room callbacks ---- */

static void on_state_changed(livekit_connection_state_t state, void *ctx)
{
    (void)ctx;
    livekit_failure_reason_t reason = livekit_room_get_failure_reason(room);
    say("state\t%s\t%s\t%d\t%d", livekit_connection_state_str(state),
        livekit_failure_reason_str(reason), (int)state, (int)reason);
}

static void on_rpc_result(const livekit_rpc_result_t *result, void *ctx)
{
    (void)ctx;
    if (result->code == LIVEKIT_RPC_RESULT_OK) {
        say("rpc-result\t%s\tok\t%s", result->id, result->payload != NULL ? result->payload : "");
    } else {
        say("rpc-result\t%s\terror\t%d\t%s", result->id, (int)result->code,
            result->error_message != NULL ? result->error_message : "");
    }
}

static void on_data_received(const livekit_data_received_t *data, void *ctx)
{
    (void)ctx;
    say("data\t%s\t%s\t%.*s", data->sender_identity, data->topic != NULL ? data->topic : "",
        (int)data->payload.size, (const char *)data->payload.bytes);
}

static void on_echo(const livekit_rpc_invocation_t *invocation, void *ctx)
{
    (void)ctx;
    const char *payload = invocation->payload != NULL ? invocation->payload : "";
    say("invoked\t%s\t%s\t%s", invocation->caller_identity, invocation->method, payload);
    if (!livekit_rpc_return_ok(payload)) {
        say("error\techo\tthe answer did not go out");
    }
}

/* ---- commands ---- */

/* The next space-separated word of *rest (NULL at the end); *rest moves past it. */
static char *next_word(char **rest)
{
    char *s = *rest;
    if (s == NULL || *s == '\0') {
        return NULL;
    }
    char *space = strchr(s, ' ');
    if (space != NULL) {
        *space = '\0';
        *rest = space + 1;
    } else {
        *rest = s + strlen(s);
    }
    return s;
}

static void command(char *line)
{
    char *rest = line;
    char *verb = next_word(&rest);
    if (verb == NULL) {
        return;
    }
    if (strcmp(verb, "rpc") == 0) {
        char *destination = next_word(&rest);
        char *method = next_word(&rest);
        if (destination == NULL || method == NULL) {
            say("error\trpc\tusage: rpc DESTINATION METHOD PAYLOAD");
            return;
        }
        livekit_rpc_invoke_options_t options = {
            .destination_identity = destination,
            .method = method,
            .payload = rest,
            .response_timeout_ms = 10000,
        };
        uint64_t id = 0;
        livekit_err_t err = livekit_room_rpc_invoke(room, &options, &id);
        if (err == LIVEKIT_ERR_NONE) {
            say("rpc-sent\t%llu", (unsigned long long)id);
        } else {
            say("error\trpc\t%d", (int)err);
        }
    } else if (strcmp(verb, "send") == 0 || strcmp(verb, "data") == 0) {
        char *topic = next_word(&rest);
        if (topic == NULL) {
            say("error\t%s\tusage: %s TOPIC TEXT", verb, verb);
            return;
        }
        livekit_err_t err;
        if (strcmp(verb, "send") == 0) {
            err = send_text(topic, rest, NULL);
        } else {
            livekit_data_payload_t payload = { .bytes = (uint8_t *)rest, .size = strlen(rest) };
            livekit_data_publish_options_t options = {
                .payload = &payload,
                .topic = topic,
                .lossy = false,
            };
            err = livekit_room_publish_data(room, &options);
        }
        if (err == LIVEKIT_ERR_NONE) {
            say("sent\t%s\t%s", verb, topic);
        } else {
            say("error\t%s\t%d", verb, (int)err);
        }
    } else if (strcmp(verb, "close") == 0) {
        livekit_err_t err = livekit_room_close(room);
        if (err != LIVEKIT_ERR_NONE) {
            say("error\tclose\t%d", (int)err);
        }
    } else {
        say("error\tunknown command\t%s", verb);
    }
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: %s URL TOKEN\n", argv[0]);
        return 2;
    }
    if (livekit_system_init() != LIVEKIT_ERR_NONE) {
        fprintf(stderr, "device_demo: system init failed\n");
        return 1;
    }
    livekit_room_options_t options = {
        .on_state_changed = on_state_changed,
        .on_rpc_result = on_rpc_result,
        .on_data_received = on_data_received,
        .ctx = NULL,
    };
    livekit_err_t err = livekit_room_create(&room, &options);
    if (err != LIVEKIT_ERR_NONE) {
        fprintf(stderr, "device_demo: livekit_room_create: %d\n", (int)err);
        return 1;
    }
    livekit_data_stream_handler_t chat = {
        .on_recv = on_stream_recv,
        .on_open = on_stream_open,
        .on_close = on_stream_close,
        .ctx = NULL,
    };
    if (livekit_room_rpc_register(room, "echo", on_echo) != LIVEKIT_ERR_NONE ||
        livekit_room_data_stream_topic_register(room, "chat", &chat) != LIVEKIT_ERR_NONE) {
        fprintf(stderr, "device_demo: registration failed\n");
        livekit_room_destroy(room);
        return 1;
    }
    err = livekit_room_connect(room, argv[1], argv[2]);
    if (err != LIVEKIT_ERR_NONE) {
        say("error\tconnect\t%d", (int)err);
    }

    char *line = NULL;
    size_t capacity = 0;
    ssize_t n;
    while ((n = getline(&line, &capacity, stdin)) >= 0) {
        while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r')) {
            line[--n] = '\0';
        }
        if (strcmp(line, "quit") == 0) {
            break;
        }
        command(line);
    }
    free(line);

    livekit_room_destroy(room);
    for (int i = 0; i < MAX_TEXTS; i++) {
        if (texts[i].stream_id != NULL) {
            text_free(&texts[i]);
        }
    }
    return 0;
}
