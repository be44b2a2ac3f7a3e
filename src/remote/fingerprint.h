// The model fingerprint both ends of a connection compare in the handshake (transport/handshake.h)
// and the name of a worker's tensor cache folder (tensor_cache.h).
#pragma once

#include <string>

namespace meshlm::remote {

// Hex SHA-256 over config.json's bytes and the sorted list of every tensor's name, dtype and
// shape from the *.safetensors headers in model_dir. Two folders with the same config and tensor
// layout give the same fingerprint. Throws Error("fingerprint", ...).
std::string fingerprint(const std::string& model_dir);

}  // namespace meshlm::remote
