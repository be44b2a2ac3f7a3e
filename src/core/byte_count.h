// Byte counts as people read them, in binary units: "512 B", "1.50 KiB", "45.1 MiB", "3.40 GiB".
#pragma once

#include <string>

namespace meshlm {

// Three significant digits from 1 KiB up ("1.50 GiB", "12.0 MiB", "300 MiB"), whole bytes below.
std::string format_bytes(double bytes);

}  // namespace meshlm
