// arrowshm.hpp: read arrowshm datasets from C++ as arrow::Table, zero-copy.
//
// Header-only, on top of libarrowshm (arrowshm.h / arrowshm.c) and Arrow C++ (for
// example the one inside the pyarrow wheel: pyarrow.get_include(),
// pyarrow.get_library_dirs(), -std=c++20 -larrow; see docs/OTHER_LANGUAGES.md).
//
//   auto ns = arrowshm::Namespace::Open("default").ValueOrDie();
//   std::shared_ptr<arrow::Table> t = ns->GetTable("prices").ValueOrDie();
//
// Every buffer of the table is a slice of one arrowshm::PinnedBuffer, which holds the
// libarrowshm view (the version's pin): the pin is released when the last buffer of
// the table goes, the C++ twin of the Python lease. Tables may outlive the Namespace.
#pragma once

#include <arrow/api.h>
#include <arrow/c/bridge.h>
#include <arrow/io/memory.h>
#include <arrow/ipc/api.h>

#include <cstdint>
#include <cstring>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>

#include "arrowshm.h"

namespace arrowshm {

// The arrow::Status of a libarrowshm status code (with ash_errmsg()'s text).
inline arrow::Status ToStatus(int rc) {
  if (rc == ASH_OK) return arrow::Status::OK();
  std::string msg = std::string(ash_strerror(rc)) + ": " + ash_errmsg();
  switch (rc) {
    case ASH_ENOTFOUND:
    case ASH_ENOVERSION:
      return arrow::Status::KeyError(msg);
    case ASH_EINVAL:
    case ASH_EKIND:
      return arrow::Status::Invalid(msg);
    case ASH_ENOMEM:
      return arrow::Status::OutOfMemory(msg);
    case ASH_ECORRUPT:
    case ASH_EFORMAT:
      return arrow::Status::SerializationError(msg);
    default:
      return arrow::Status::IOError(msg);
  }
}

// The bytes of one pinned version (its Arrow IPC stream), read-only, in the mapping.
// Releases the pin in its destructor: keep it (or any slice of it) alive as long as
// the data is used.
class PinnedBuffer final : public arrow::Buffer {
 public:
  explicit PinnedBuffer(const ash_view& view)
      : arrow::Buffer(view.data, static_cast<int64_t>(view.length)), view_(view) {}
  ~PinnedBuffer() override { ash_release(&view_); }
  PinnedBuffer(const PinnedBuffer&) = delete;
  PinnedBuffer& operator=(const PinnedBuffer&) = delete;

  uint64_t version() const { return view_.version; }
  uint64_t num_rows() const { return view_.num_rows; }
  uint64_t schema_fp() const { return view_.schema_fp; }
  uint64_t segment_id() const { return view_.segment_id; }
  uint64_t batch_offset() const { return view_.batch_offset; }
  uint64_t batch_length() const { return view_.batch_length; }

 private:
  ash_view view_;
};

class Namespace {
 public:
  // Open namespace `ns` (nullptr: $ARROWSHM_NAMESPACE or "default") in directory `dir`
  // (nullptr: $ARROWSHM_DIR or /dev/shm); see ash_open.
  static arrow::Result<std::shared_ptr<Namespace>> Open(const char* ns = nullptr,
                                                        const char* dir = nullptr) {
    ash_ns* handle = nullptr;
    ARROW_RETURN_NOT_OK(ToStatus(ash_open(ns, dir, &handle)));
    return std::shared_ptr<Namespace>(new Namespace(handle));
  }
  ~Namespace() { ash_close(ns_); }
  Namespace(const Namespace&) = delete;
  Namespace& operator=(const Namespace&) = delete;

  ash_ns* handle() const { return ns_; }

  // The pinned IPC stream of `version` (0: latest) of dataset `name`.
  arrow::Result<std::shared_ptr<PinnedBuffer>> GetBuffer(std::string_view name,
                                                         uint64_t version = 0) {
    std::string n(name);
    ash_view view;
    ARROW_RETURN_NOT_OK(ToStatus(ash_get(ns_, n.c_str(), version, &view)));
    return std::make_shared<PinnedBuffer>(view);
  }

  // `version` (0: latest) of dataset `name` as a table whose buffers lie in the mapping.
  arrow::Result<std::shared_ptr<arrow::Table>> GetTable(std::string_view name,
                                                        uint64_t version = 0) {
    ARROW_ASSIGN_OR_RAISE(auto buf, GetBuffer(name, version));
    return ToTable(buf);
  }

  // Decode a pinned buffer. A single-batch version of a schema this Namespace already
  // parsed (same fingerprint) is decoded from its batch message alone (the header's
  // batch locator); anything else is read as the whole stream.
  arrow::Result<std::shared_ptr<arrow::Table>> ToTable(const std::shared_ptr<PinnedBuffer>& buf) {
    std::shared_ptr<arrow::Buffer> whole = buf;
    if (buf->batch_length() != 0) {
      std::shared_ptr<arrow::Schema> schema = CachedSchema(buf->schema_fp());
      if (schema) {
        // an encapsulated message: 0xFFFFFFFF, int32 metadata length, metadata, body
        const int64_t off = static_cast<int64_t>(buf->batch_offset());
        const int64_t len = static_cast<int64_t>(buf->batch_length());
        uint32_t marker = 0;
        int32_t meta = 0;
        std::memcpy(&marker, buf->data() + off, 4);
        std::memcpy(&meta, buf->data() + off + 4, 4);
        if (marker != 0xFFFFFFFFu || meta <= 0 || meta % 8 != 0 || 8 + int64_t{meta} > len)
          return arrow::Status::SerializationError("arrowshm: bad record-batch message");
        ARROW_ASSIGN_OR_RAISE(
            auto message,
            arrow::ipc::Message::Open(arrow::SliceBuffer(whole, off + 8, meta),
                                      arrow::SliceBuffer(whole, off + 8 + meta, len - 8 - meta)));
        // (no dictionaries in a located batch: the empty memo is only read)
        ARROW_ASSIGN_OR_RAISE(auto batch, arrow::ipc::ReadRecordBatch(*message, schema, &memo_,
                                                                      options_));
        return arrow::Table::Make(schema, batch->columns(), batch->num_rows());
      }
    }
    auto input = std::make_shared<arrow::io::BufferReader>(whole);
    ARROW_ASSIGN_OR_RAISE(auto reader,
                          arrow::ipc::RecordBatchStreamReader::Open(input, Options()));
    ARROW_ASSIGN_OR_RAISE(auto table, reader->ToTable());
    if (buf->batch_length() != 0) Remember(buf->schema_fp(), table->schema());
    return table;
  }

  // Export `version` (0: latest) of dataset `name` through the Arrow C stream interface
  // (struct ArrowArrayStream), for any other Arrow binding; the stream and the arrays
  // it yields keep the pin until released.
  arrow::Status ExportStream(std::string_view name, struct ArrowArrayStream* out,
                             uint64_t version = 0) {
    ARROW_ASSIGN_OR_RAISE(auto table, GetTable(name, version));
    return ExportTable(table, out);
  }

  static arrow::Status ExportTable(const std::shared_ptr<arrow::Table>& table,
                                   struct ArrowArrayStream* out) {
    auto reader = std::make_shared<arrow::TableBatchReader>(table);
    return arrow::ExportRecordBatchReader(reader, out);
  }

  // Block until `name` has a version above `after_version` (see ash_wait).
  arrow::Result<uint64_t> Wait(std::string_view name, uint64_t after_version,
                               int64_t timeout_ns = -1) {
    std::string n(name);
    uint64_t version = 0;
    ARROW_RETURN_NOT_OK(ToStatus(ash_wait(ns_, n.c_str(), after_version, timeout_ns, &version)));
    return version;
  }

 private:
  explicit Namespace(ash_ns* ns) : ns_(ns) {}

  static arrow::ipc::IpcReadOptions Options() {
    auto options = arrow::ipc::IpcReadOptions::Defaults();
    options.use_threads = false;  // a handful of buffers: threads cost more than they save
    return options;
  }

  std::shared_ptr<arrow::Schema> CachedSchema(uint64_t fp) {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = schemas_.find(fp);
    return it == schemas_.end() ? nullptr : it->second;
  }

  void Remember(uint64_t fp, std::shared_ptr<arrow::Schema> schema) {
    std::lock_guard<std::mutex> lock(mu_);
    if (schemas_.size() > 64) schemas_.clear();
    schemas_[fp] = std::move(schema);
  }

  ash_ns* ns_;
  const arrow::ipc::IpcReadOptions options_ = Options();
  const arrow::ipc::DictionaryMemo memo_;
  std::mutex mu_;
  std::unordered_map<uint64_t, std::shared_ptr<arrow::Schema>> schemas_;
};

}  // namespace arrowshm
