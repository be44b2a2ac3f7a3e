// The web page (web/), embedded into the binary at build time by embed_web.cmake so that
// `meshlm serve` needs no files at run time.
#pragma once

#include <cstddef>
#include <span>

namespace meshlm::server {

struct WebAsset {
  const char* path;  // URL path, e.g. "/index.html"
  const char* mime;
  const unsigned char* data;
  size_t size;
};

std::span<const WebAsset> web_assets();

}  // namespace meshlm::server
