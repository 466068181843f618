// Read the latest version of a dataset as an arrow::Table, zero-copy.
#include <iostream>

#include "arrowshm.hpp"

int main(int argc, char** argv) {
  const char* name = argc > 1 ? argv[1] : "prices";
  auto ns = arrowshm::Namespace::Open().ValueOrDie();  // $ARROWSHM_NAMESPACE, $ARROWSHM_DIR
  arrow::Result<std::shared_ptr<arrow::Table>> got = ns->GetTable(name);
  if (!got.ok()) {
    std::cerr << got.status().ToString() << std::endl;
    return 1;
  }
  std::shared_ptr<arrow::Table> table = *got;  // its buffers lie in the shared mapping
  std::cout << name << ": " << table->num_rows() << " rows\n"
            << table->schema()->ToString() << std::endl;
  // Hand it to any other Arrow binding through the C stream interface; the stream (and
  // every array it yields) keeps the version pinned until its consumer releases it.
  struct ArrowArrayStream stream;
  if (!arrowshm::Namespace::ExportTable(table, &stream).ok()) return 1;
  table.reset();
  stream.release(&stream);
  return 0;
}
