// C++ test and benchmark driver of arrowshm.hpp (compiled by tests/clib/conftest.py).
//
//   reader_cpp read NS NAME FINAL   tables of the latest version until FINAL: checks
//                                   that every buffer lies inside the pinned mapping and
//                                   that column "v" holds the version in every row
//   reader_cpp hold NS NAME...      hold the latest table of each name; on stdin "check"
//                                   print the crc32 of each one's buffers, on "exit" exit
//   reader_cpp stream NS NAME       export through the Arrow C stream interface, import
//                                   it back and count the rows
//   reader_cpp bench NS NAME REPS   first get to a table (after a wait) and repeated get
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <iostream>
#include <string>
#include <vector>

#include "arrowshm.hpp"

static uint32_t crc_table[256];
static void crc_init() {
  for (uint32_t i = 0; i < 256; i++) {
    uint32_t c = i;
    for (int k = 0; k < 8; k++) c = c & 1 ? 0xEDB88320u ^ (c >> 1) : c >> 1;
    crc_table[i] = c;
  }
}
static uint32_t crc32_update(uint32_t c, const uint8_t* p, int64_t n) {
  for (int64_t i = 0; i < n; i++) c = crc_table[(c ^ p[i]) & 0xFF] ^ (c >> 8);
  return c;
}

// every buffer of `data` (children and dictionaries too) lies in [lo, hi)
static bool inside(const std::shared_ptr<arrow::ArrayData>& data, const uint8_t* lo,
                   const uint8_t* hi) {
  for (const auto& b : data->buffers) {
    if (!b || b->size() == 0) continue;
    if (b->data() < lo || b->data() + b->size() > hi) return false;
  }
  for (const auto& c : data->child_data)
    if (!inside(c, lo, hi)) return false;
  if (data->dictionary && !inside(data->dictionary, lo, hi)) return false;
  return true;
}

static bool table_inside(const arrow::Table& t, const uint8_t* lo, const uint8_t* hi) {
  for (const auto& col : t.columns())
    for (const auto& chunk : col->chunks())
      if (!inside(chunk->data(), lo, hi)) return false;
  return true;
}

static uint32_t table_crc(const arrow::Table& t) {
  uint32_t c = 0xFFFFFFFFu;
  for (const auto& col : t.columns())
    for (const auto& chunk : col->chunks())
      for (const auto& b : chunk->data()->buffers)
        if (b) c = crc32_update(c, b->data(), b->size());
  return c ^ 0xFFFFFFFFu;
}

static bool v_column_is(const arrow::Table& t, uint64_t version) {
  auto col = t.GetColumnByName("v");
  if (!col) return false;
  for (const auto& chunk : col->chunks()) {
    auto a = std::static_pointer_cast<arrow::Int64Array>(chunk);
    for (int64_t i = 0; i < a->length(); i++)
      if (static_cast<uint64_t>(a->Value(i)) != version) return false;
  }
  return true;
}

static double now_ns() {
  return std::chrono::duration<double, std::nano>(
             std::chrono::steady_clock::now().time_since_epoch()).count();
}

static double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

int main(int argc, char** argv) {
  crc_init();
  std::setvbuf(stdout, nullptr, _IOLBF, 0);
  if (argc < 4) return 2;
  std::string mode = argv[1];
  auto opened = arrowshm::Namespace::Open(argv[2]);
  if (!opened.ok()) {
    std::printf("open %s\n", opened.status().ToString().c_str());
    return 3;
  }
  auto ns = *opened;
  const char* name = argv[3];
  if (mode == "read" && argc >= 5) {
    uint64_t final_version = std::stoull(argv[4]), last = 0, reads = 0, backwards = 0,
             torn = 0, outside = 0;
    uint32_t last_crc = 0;
    for (;;) {
      auto got = ns->GetBuffer(name);
      if (!got.ok()) {
        if (got.status().IsKeyError()) continue;  // not put yet
        std::printf("error %s\n", got.status().ToString().c_str());
        return 1;
      }
      auto buf = *got;
      uint32_t c = crc32_update(0xFFFFFFFFu, buf->data(), buf->size()) ^ 0xFFFFFFFFu;
      auto table = ns->ToTable(buf);
      if (!table.ok()) {
        std::printf("error %s\n", table.status().ToString().c_str());
        return 1;
      }
      uint64_t version = buf->version();
      reads++;
      if (version < last) backwards++;
      if (!v_column_is(**table, version)) torn++;
      if (!table_inside(**table, buf->data(), buf->data() + buf->size())) outside++;
      if (version != last || c != last_crc) std::printf("V %llu %u\n", (unsigned long long)version, c);
      last = version;
      last_crc = c;
      if (last >= final_version) break;
    }
    std::printf("done reads %llu backwards %llu torn %llu outside %llu\n",
                (unsigned long long)reads, (unsigned long long)backwards,
                (unsigned long long)torn, (unsigned long long)outside);
  } else if (mode == "hold") {
    // hold the latest table of every name given; print each, then answer on stdin
    std::vector<std::shared_ptr<arrow::Table>> tables;
    std::vector<uint64_t> versions;
    for (int i = 3; i < argc; i++) {
      auto buf = ns->GetBuffer(argv[i]).ValueOrDie();
      auto table = ns->ToTable(buf).ValueOrDie();
      const uint8_t* lo = buf->data();
      std::printf("held %s %llu %u %d %llu\n", argv[i], (unsigned long long)buf->version(),
                  table_crc(*table), (int)table_inside(*table, lo, lo + buf->size()),
                  (unsigned long long)buf->segment_id());
      versions.push_back(buf->version());
      tables.push_back(table);  // (buf goes here: only the table keeps the pin)
    }
    std::printf("pid %d\n", (int)getpid());
    std::string line;
    while (std::getline(std::cin, line)) {
      if (line == "check") {
        for (size_t i = 0; i < tables.size(); i++)
          std::printf("crc %u %d\n", table_crc(*tables[i]), (int)v_column_is(*tables[i], versions[i]));
      } else if (line == "exit") {
        break;
      }
    }
    tables.clear();  // releases the pins
    std::printf("released\n");
  } else if (mode == "stream") {
    // export through the Arrow C stream interface, import it back (as another binding
    // would): the imported arrays still point into the mapping, and keep the pin
    auto buf = ns->GetBuffer(name).ValueOrDie();
    const uint8_t* lo = buf->data();
    const uint8_t* hi = lo + buf->size();
    auto table = ns->ToTable(buf).ValueOrDie();
    buf.reset();
    struct ArrowArrayStream stream;
    auto st = arrowshm::Namespace::ExportTable(table, &stream);
    table.reset();  // only the stream holds the version now
    if (!st.ok()) {
      std::printf("error %s\n", st.ToString().c_str());
      return 1;
    }
    auto reader = arrow::ImportRecordBatchReader(&stream).ValueOrDie();
    int64_t rows = 0;
    bool all_inside = true;
    for (;;) {
      std::shared_ptr<arrow::RecordBatch> batch;
      if (!reader->ReadNext(&batch).ok() || !batch) break;
      rows += batch->num_rows();
      for (const auto& col : batch->columns()) all_inside = all_inside && inside(col->data(), lo, hi);
    }
    std::printf("stream rows %lld inside %d\n", (long long)rows, (int)all_inside);
  } else if (mode == "bench" && argc >= 5) {
    int reps = std::stoi(argv[4]);
    std::vector<double> first, again;
    uint64_t after = 0;
    std::shared_ptr<arrow::Table> held;
    std::printf("ready\n");
    // first get of each new version Python puts (versions 1..reps; one may be missed)
    for (int i = 0; i < reps && after < static_cast<uint64_t>(reps); i++) {
      after = ns->Wait(name, after, 30000000000LL).ValueOrDie();
      double t0 = now_ns();
      auto t = ns->GetTable(name).ValueOrDie();
      first.push_back(now_ns() - t0);
      held = t;  // the previous version goes
    }
    for (int i = 0; i < 200; i++) {
      double t0 = now_ns();
      auto t = ns->GetTable(name).ValueOrDie();
      again.push_back(now_ns() - t0);
    }
    if (first.size() > 1) first.erase(first.begin());  // the first one warms up
    std::printf("bench first_ns %.0f repeat_ns %.0f\n", median(first), median(again));
  } else {
    return 2;
  }
  return 0;
}
