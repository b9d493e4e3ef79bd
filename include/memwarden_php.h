/* memwarden.h for PHP's FFI::cdef: generated from include/memwarden.h; do not edit. */

typedef enum {
  MW_STATUS_OK = 0,
  MW_STATUS_NULL_ARGUMENT = 1,
  MW_STATUS_INVALID_ARGUMENT = 2,
  MW_STATUS_INVALID_CONFIG = 3,
  MW_STATUS_TIMEOUT = 4,
  MW_STATUS_EXHAUSTED = 5,
  MW_STATUS_CYCLE = 6,
  MW_STATUS_NOT_FOUND = 7,
  MW_STATUS_IO = 8,
  MW_STATUS_DATABASE = 9,
  MW_STATUS_CALLBACK = 10,
  MW_STATUS_CLOSED = 11,
  MW_STATUS_UNSUPPORTED = 12,
  MW_STATUS_PANIC = 99,
} mw_status;

typedef enum {
  MW_STATE_NORMAL = 0,
  MW_STATE_WARNING = 1,
  MW_STATE_CRITICAL = 2,
  MW_STATE_EMERGENCY = 3,
} mw_state;

typedef enum {
  MW_VALUE_TYPE_NULL = 0,
  MW_VALUE_TYPE_INT = 1,
  MW_VALUE_TYPE_REAL = 2,
  MW_VALUE_TYPE_TEXT = 3,
  MW_VALUE_TYPE_BLOB = 4,
  MW_VALUE_TYPE_BOOL = 5,
} mw_value_type;

typedef enum {
  MW_KEY_KIND_NONE = 0,
  MW_KEY_KIND_INT = 1,
  MW_KEY_KIND_TEXT = 2,
} mw_key_kind;

typedef enum {
  MW_LIMIT_ORIGIN_EXPLICIT = 0,
  MW_LIMIT_ORIGIN_HOST = 1,
  MW_LIMIT_ORIGIN_CGROUP_V2 = 2,
  MW_LIMIT_ORIGIN_CGROUP_V1 = 3,
  MW_LIMIT_ORIGIN_PHYSICAL = 4,
} mw_limit_origin;

typedef enum {
  MW_LIFETIME_LAZY = 0,
  MW_LIFETIME_SINGLETON = 1,
  MW_LIFETIME_FACTORY = 2,
  MW_LIFETIME_SCOPED = 3,
} mw_lifetime;

typedef struct mw_alert mw_alert;

typedef struct mw_batch mw_batch;

typedef struct mw_chunk mw_chunk;

typedef struct mw_container mw_container;

typedef struct mw_filtered mw_filtered;

typedef struct mw_host_result mw_host_result;

typedef struct mw_lazy mw_lazy;

typedef struct mw_manager mw_manager;

typedef struct mw_monitor mw_monitor;

typedef struct mw_pool mw_pool;

typedef struct mw_request mw_request;

typedef struct mw_scope mw_scope;

typedef struct mw_stream mw_stream;

typedef struct mw_streaming mw_streaming;

typedef struct mw_tracker mw_tracker;

typedef struct mw_tx mw_tx;

typedef void (*mw_alert_event_fn)(void *user_data, const char *event_json);

typedef int32_t (*mw_host_query_fn)(void *user,
                                    const char *sql,
                                    const char *params_json,
                                    const char *key_column,
                                    bool meta,
                                    mw_host_result *result);

typedef int32_t (*mw_batch_fn)(void *user, const mw_batch *batch);

typedef int32_t (*mw_row_fn)(void *user, const mw_batch *batch, size_t row);

typedef int32_t (*mw_progress_fn)(void *user, const char *stats_json);

typedef int32_t (*mw_chunk_error_fn)(void *user, const char *message, const char *chunk_json);

typedef int32_t (*mw_batch_tx_fn)(void *user, const mw_batch *batch, mw_tx *tx);

typedef struct {
  mw_batch_fn on_batch;
  mw_row_fn on_row;
  mw_progress_fn on_progress;
  mw_chunk_error_fn on_error;
  void *user;
  mw_batch_tx_fn on_batch_tx;
} mw_chunk_callbacks;

typedef int32_t (*mw_container_factory_fn)(void *user_data,
                                           mw_container *container,
                                           void **out_instance);

typedef void (*mw_container_destroy_fn)(void *user_data, void *instance);

typedef void (*mw_free_fn)(void *user_data);

typedef size_t mw_item;

typedef int32_t (*mw_chunk_source_fn)(void *user, size_t max, mw_item *items, size_t *n);

typedef struct {
  mw_key_kind kind;
  int64_t int_value;
  const char *text;
} mw_key;

typedef int32_t (*mw_lazy_load_fn)(void *user,
                                   uint64_t offset,
                                   const mw_key *after,
                                   size_t limit,
                                   mw_item *items,
                                   size_t *n,
                                   mw_key *last_key);

typedef int32_t (*mw_filter_fn)(void *user, mw_item item);

typedef struct {
  uint64_t current_bytes;
  uint64_t peak_bytes;
  uint64_t limit_bytes;
  double usage_percent;
} mw_usage;

typedef int32_t (*mw_host_reader_fn)(void *user_data,
                                     uint64_t *current_bytes,
                                     uint64_t *peak_bytes,
                                     int64_t *limit_bytes);

typedef int32_t (*mw_state_change_fn)(void *user_data, mw_state old_state, mw_state new_state);

typedef int32_t (*mw_hook_fn)(void *user_data);

typedef int32_t (*mw_gc_fn)(void *user_data, const char *report_json);

typedef int32_t (*mw_cleanup_fn)(void *user_data, bool emergency);

typedef int32_t (*mw_pool_create_fn)(void *user_data, void **out_object);

typedef int32_t (*mw_pool_reset_fn)(void *user_data, void *object);

typedef int32_t (*mw_pool_validate_fn)(void *user_data, void *object, bool *out_valid);

typedef void (*mw_pool_destroy_fn)(void *user_data, void *object);

typedef void (*mw_pool_leak_fn)(void *user_data, const char *report_json);

typedef struct {
  void *user_data;
  mw_free_fn free_user_data;
  mw_pool_create_fn create;
  mw_pool_reset_fn reset;
  mw_pool_validate_fn validate;
  mw_pool_destroy_fn destroy;
  mw_pool_leak_fn on_leak;
  bool background_hooks;
} mw_pool_callbacks;

typedef struct {
  bool measured;
  bool high_usage;
  uint32_t overlapped;
  uint64_t start_bytes;
  uint64_t end_bytes;
  uint64_t peak_bytes;
  int64_t delta_bytes;
  double duration_ms;
  uint64_t limit_bytes;
  char headers[192];
} mw_request_report;

typedef int32_t (*mw_request_high_usage_fn)(void *user_data,
                                            const char *report_json,
                                            char *error_buf,
                                            size_t error_len);

typedef int32_t (*mw_stream_chunk_fn)(void *user,
                                      const uint8_t *data,
                                      size_t len,
                                      uint64_t index,
                                      char **error_out);

typedef struct {
  uint64_t index;
  uint64_t offset;
  uint64_t size;
  uint64_t resource_id;
} mw_chunk_ticket;

typedef void (*mw_tracker_event_fn)(void *user_data, const char *event_json);

const char *mw_last_error_message(void);

void mw_string_free(char *s);

const char *mw_version(void);

mw_status mw_size_parse(const char *text, int64_t *out_bytes);

mw_status mw_size_format(uint64_t bytes, char **out);

mw_status mw_alert_new(const char *config_json, const mw_manager *manager, mw_alert **out);

void mw_alert_free(mw_alert *alert);

mw_status mw_alert_check(mw_alert *a, mw_state *level_out);

mw_status mw_alert_send(mw_alert *a, const char *message, mw_state level, int64_t *id_out);

mw_status mw_alert_flush(mw_alert *a, double timeout_seconds, bool *drained);

mw_status mw_alert_history(const mw_alert *a, const char *filter_json, char **json_out);

mw_status mw_alert_poll(mw_alert *a, char **events_json_out);

mw_status mw_alert_set_event_callback(mw_alert *a, mw_alert_event_fn callback, void *user_data);

mw_status mw_chunk_open(const char *connection, const char *config_json, mw_chunk **out);

mw_status mw_chunk_new_host(const char *dialect,
                            const char *param_style,
                            mw_host_query_fn query,
                            void *user,
                            const char *config_json,
                            mw_chunk **out);

mw_status mw_host_result_set_json(mw_host_result *result, const char *json);

mw_status mw_host_result_set_host_rows(mw_host_result *result,
                                       const char *columns_json,
                                       size_t rows,
                                       const char *first_key_json,
                                       const char *last_key_json,
                                       size_t bytes);

mw_status mw_chunk_set_manager(mw_chunk *chunk_, const mw_manager *manager);

mw_status mw_chunk_process_query(mw_chunk *chunk,
                                 const char *sql,
                                 const char *options_json,
                                 const mw_chunk_callbacks *callbacks,
                                 char **stats_json_out);

mw_status mw_chunk_process(mw_chunk *chunk,
                           const char *sql,
                           const mw_chunk_callbacks *callbacks,
                           char **stats_json_out);

mw_status mw_chunk_tx_execute(mw_tx *tx, const char *sql, const char *params_json);

mw_status mw_chunk_tx_query(mw_tx *tx,
                            const char *sql,
                            const char *params_json,
                            char **rows_json_out);

mw_status mw_chunk_stats(const mw_chunk *chunk_, char **json_out);

void mw_chunk_free(mw_chunk *chunk);

size_t mw_batch_row_count(const mw_batch *batch);

size_t mw_batch_column_count(const mw_batch *batch);

const char *mw_batch_column_name(const mw_batch *batch, size_t col);

bool mw_batch_is_host_rows(const mw_batch *batch);

mw_value_type mw_batch_type(const mw_batch *batch, size_t row, size_t col);

mw_status mw_batch_int(const mw_batch *batch, size_t row, size_t col, int64_t *out);

mw_status mw_batch_real(const mw_batch *batch, size_t row, size_t col, double *out);

mw_status mw_batch_text(const mw_batch *batch,
                        size_t row,
                        size_t col,
                        const char **data,
                        size_t *len);

mw_status mw_batch_blob(const mw_batch *batch,
                        size_t row,
                        size_t col,
                        const uint8_t **data,
                        size_t *len);

mw_status mw_batch_json(const mw_batch *batch, bool tuples, char **json_out);

mw_status mw_batch_info(const mw_batch *batch, char **json_out);

mw_status mw_container_new(const char *config_json, mw_container **out);

void mw_container_free(mw_container *container);

mw_status mw_container_register(mw_container *container,
                                const char *name,
                                int32_t lifetime_kind,
                                mw_container_factory_fn factory,
                                mw_container_destroy_fn destroy,
                                void *user_data,
                                mw_free_fn free_user_data,
                                bool replace);

mw_status mw_container_get(mw_container *container, const char *name, void **out_instance);

mw_status mw_container_has(const mw_container *container, const char *name, bool *out);

mw_status mw_container_alias(mw_container *container, const char *alias, const char *target);

mw_status mw_container_tag(mw_container *container,
                           const char *name,
                           const char *const *tags,
                           size_t count);

mw_status mw_container_get_by_tag(mw_container *container,
                                  const char *tag,
                                  void **out_instances,
                                  size_t capacity,
                                  size_t *out_count);

mw_status mw_container_dispose(mw_container *container);

mw_status mw_container_stats_json(const mw_container *container, char **out);

mw_status mw_container_create_scope(mw_container *container, mw_scope **out);

mw_status mw_scope_get(mw_scope *scope, const char *name, void **out_instance);

mw_status mw_scope_dispose(mw_scope *scope);

void mw_scope_free(mw_scope *scope);

mw_status mw_manager_add_container(mw_manager *manager,
                                   const char *name,
                                   int32_t priority,
                                   mw_container *container);

mw_status mw_streaming_new(const char *config_json,
                           mw_chunk_source_fn source,
                           void *user,
                           mw_streaming **out);

mw_status mw_streaming_next(mw_streaming *it, const mw_item **items, size_t *n);

mw_status mw_streaming_rewind(mw_streaming *it);

mw_status mw_streaming_stats(const mw_streaming *it, char **json_out);

mw_status mw_streaming_set_manager(mw_streaming *it, const mw_manager *manager);

void mw_streaming_free(mw_streaming *it);

mw_status mw_lazy_new(const char *config_json, mw_lazy_load_fn load, void *user, mw_lazy **out);

mw_status mw_lazy_next_batch(mw_lazy *it, const mw_item **items, size_t *n);

mw_status mw_lazy_rewind(mw_lazy *it);

mw_status mw_lazy_stats(const mw_lazy *it, char **json_out);

mw_status mw_lazy_set_manager(mw_lazy *it, const mw_manager *manager);

void mw_lazy_free(mw_lazy *it);

mw_status mw_filtered_new(const char *config_json,
                          mw_chunk_source_fn source,
                          void *user,
                          const mw_filter_fn *filters,
                          void *const *filter_users,
                          size_t n_filters,
                          mw_filtered **out);

mw_status mw_filtered_next_batch(mw_filtered *it, size_t max, const mw_item **items, size_t *n);

mw_status mw_filtered_stats(const mw_filtered *it, char **json_out);

void mw_filtered_free(mw_filtered *it);

mw_status mw_manager_new(const char *config_json, mw_manager **out);

void mw_manager_free(mw_manager *manager);

mw_status mw_manager_check(mw_manager *manager, mw_state *out_state);

mw_status mw_manager_state(const mw_manager *manager, mw_state *out);

mw_status mw_manager_usage(const mw_manager *manager, mw_usage *out);

mw_status mw_manager_usage_json(const mw_manager *manager, char **out);

mw_status mw_manager_set_limit(mw_manager *manager, const char *size);

mw_status mw_manager_set_limit_bytes(mw_manager *manager, int64_t bytes);

mw_status mw_manager_limit(const mw_manager *manager,
                           uint64_t *out_bytes,
                           mw_limit_origin *out_origin);

mw_status mw_manager_stats_json(const mw_manager *manager, char **out);

mw_status mw_manager_force_gc(mw_manager *manager, char **out_report);

mw_status mw_manager_emergency_cleanup(mw_manager *manager, char **out_report);

mw_status mw_manager_update_host_reading(mw_manager *manager,
                                         uint64_t current_bytes,
                                         uint64_t peak_bytes,
                                         int64_t limit_bytes);

mw_status mw_manager_set_host_reader(mw_manager *manager,
                                     mw_host_reader_fn callback,
                                     void *user_data,
                                     mw_free_fn free_user_data);

mw_status mw_manager_reset_peak(mw_manager *manager);

mw_status mw_manager_refresh_limit(mw_manager *manager);

mw_status mw_manager_on_state_change(mw_manager *manager,
                                     mw_state_change_fn callback,
                                     void *user_data,
                                     mw_free_fn free_user_data);

mw_status mw_manager_on_before_gc(mw_manager *manager,
                                  mw_hook_fn callback,
                                  void *user_data,
                                  mw_free_fn free_user_data);

mw_status mw_manager_on_after_gc(mw_manager *manager,
                                 mw_gc_fn callback,
                                 void *user_data,
                                 mw_free_fn free_user_data);

mw_status mw_manager_add_cleanup_hook(mw_manager *manager,
                                      const char *name,
                                      int32_t priority,
                                      mw_cleanup_fn callback,
                                      void *user_data,
                                      mw_free_fn free_user_data);

mw_status mw_manager_remove_cleanup_hook(mw_manager *manager, const char *name, bool *out_removed);

const char *mw_state_name(int32_t state);

mw_status mw_monitor_new(const char *config_json, mw_monitor **out);

void mw_monitor_free(mw_monitor *monitor);

mw_status mw_monitor_start(mw_monitor *monitor);

mw_status mw_monitor_stop(mw_monitor *monitor);

mw_status mw_monitor_running(mw_monitor *monitor, int32_t *running_out);

mw_status mw_monitor_status(mw_monitor *monitor, char **json_out);

mw_status mw_monitor_sample_now(mw_monitor *monitor, char **json_out);

mw_status mw_monitor_samples(mw_monitor *monitor, char **json_out);

mw_status mw_monitor_analyze(mw_monitor *monitor,
                             char **json_out);

mw_status mw_monitor_export(mw_monitor *monitor, const char *path);

mw_status mw_analyze_file(const char *path, char **json_out);

mw_status mw_pool_new(const char *config_json, const mw_pool_callbacks *callbacks, mw_pool **out);

void mw_pool_free(mw_pool *pool);

mw_status mw_pool_acquire(mw_pool *pool, const char *label, void **out_object);

mw_status mw_pool_try_acquire(mw_pool *pool,
                              const char *label,
                              void **out_object,
                              bool *out_acquired);

mw_status mw_pool_release(mw_pool *pool, void *object);

mw_status mw_pool_maintain(mw_pool *pool);

mw_status mw_pool_trim(mw_pool *pool, size_t keep, size_t *out_destroyed);

mw_status mw_pool_close(mw_pool *pool);

mw_status mw_pool_stats_json(const mw_pool *pool, char **out);

mw_status mw_manager_add_pool(mw_manager *manager,
                              const char *name,
                              int32_t priority,
                              mw_pool *pool);

mw_status mw_request_new(const char *config_json, mw_request **out);

mw_status mw_request_shared(const char *config_json, mw_request **out);

void mw_request_free(mw_request *tracker);

mw_status mw_request_record(mw_request *t,
                            const char *route,
                            uint64_t start_bytes,
                            uint64_t end_bytes,
                            uint64_t peak_bytes,
                            double duration_ms,
                            uint32_t overlapped,
                            mw_request_report *report_out);

mw_status mw_request_begin(mw_request *t, const char *route, uint64_t *token_out);

mw_status mw_request_begin_with(mw_request *t,
                                const char *route,
                                uint64_t bytes,
                                uint64_t *token_out);

mw_status mw_request_end(mw_request *t, uint64_t token, char **report_json_out);

mw_status mw_request_end_with(mw_request *t,
                              uint64_t token,
                              uint64_t bytes,
                              uint64_t peak_bytes,
                              char **report_json_out);

mw_status mw_request_end_into(mw_request *t,
                              uint64_t token,
                              uint64_t bytes,
                              uint64_t peak_bytes,
                              mw_request_report *report_out);

mw_status mw_request_peek(mw_request *t, uint64_t token, char **report_json_out);

mw_status mw_request_peek_with(mw_request *t,
                               uint64_t token,
                               uint64_t bytes,
                               uint64_t peak_bytes,
                               char **report_json_out);

mw_status mw_request_peek_into(mw_request *t,
                               uint64_t token,
                               uint64_t bytes,
                               uint64_t peak_bytes,
                               mw_request_report *report_out);

mw_status mw_request_handler_failed(mw_request *t, const char *route, const char *message);

mw_status mw_request_set_high_usage_callback(mw_request *t,
                                             mw_request_high_usage_fn callback,
                                             void *user_data,
                                             mw_free_fn free_user_data);

mw_status mw_request_analytics(mw_request *t, char **json_out);

mw_status mw_stream_new(const char *config_json, mw_stream **out);

mw_status mw_stream_new_with_tracker(const char *config_json, mw_tracker *tracker, mw_stream **out);

void mw_stream_free(mw_stream *stream);

mw_status mw_stream_process_file(mw_stream *s,
                                 const char *path,
                                 mw_stream_chunk_fn handler,
                                 void *user,
                                 char **summary_json_out);

mw_status mw_stream_begin(mw_stream *s);

mw_status mw_stream_admit(mw_stream *s,
                          uint64_t size,
                          int64_t timeout_ms,
                          mw_chunk_ticket *ticket_out,
                          bool *admitted);

mw_status mw_stream_finish(mw_stream *s,
                           mw_chunk_ticket ticket,
                           uint64_t bytes,
                           uint64_t compressed_bytes,
                           double processing_ms,
                           char **event_json_out);

mw_status mw_stream_cancel(mw_stream *s, mw_chunk_ticket ticket, bool counted);

mw_status mw_stream_end(mw_stream *s, char **summary_json_out);

mw_status mw_stream_compress(mw_stream *s,
                             const uint8_t *data,
                             size_t len,
                             uint8_t **out,
                             size_t *out_len);

void mw_bytes_free(uint8_t *data, size_t len);

mw_status mw_stream_stats(mw_stream *s, char **json_out);

mw_status mw_stream_poll(mw_stream *s, char **json_out);

mw_status mw_tracker_new(const char *config_json, mw_tracker **out);

void mw_tracker_free(mw_tracker *tracker);

mw_status mw_tracker_track(mw_tracker *t,
                           const char *type_,
                           uint64_t size,
                           const char *metadata_json,
                           uint64_t *id_out);

mw_status mw_tracker_release(mw_tracker *t, uint64_t id);

mw_status mw_tracker_mark_collected(mw_tracker *t, uint64_t id);

mw_status mw_tracker_get(mw_tracker *t, uint64_t id, char **json_out);

mw_status mw_tracker_stats(mw_tracker *t, char **json_out);

mw_status mw_tracker_exit_report_line(mw_tracker *t,
                                      char **line_out);

mw_status mw_tracker_exit_report_failed_line(const char *message, char **line_out);

mw_status mw_tracker_poll(mw_tracker *t, char **json_out);

mw_status mw_tracker_cleanup(mw_tracker *t, char **json_out);

mw_status mw_tracker_set_event_callback(mw_tracker *t,
                                        mw_tracker_event_fn callback,
                                        void *user_data,
                                        mw_free_fn free_user_data);

mw_status mw_tracker_dispose(mw_tracker *t, char **json_out);

