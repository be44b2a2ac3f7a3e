// Byte-level context-free grammars and the automaton that runs them.
//
// A Grammar is a list of rules; a rule is a list of alternatives; an alternative is a sequence
// of elements, each either a set of bytes (matches one byte) or a reference to a rule. The JSON
// Schema compiler (json_schema.h) builds them with GrammarBuilder.
//
// Automaton runs a grammar over bytes as a pushdown automaton whose configurations are sets of
// stacks: a stack is the list of positions still to match (its top is always a byte set once
// expanded; the empty stack means "complete"). Stacks are interned as persistent linked lists
// (node = position + parent node), and sets of stacks as states, so a state is one integer and
// the byte transitions between states are memoised: after the first visit, stepping a byte is a
// table lookup. That makes it a lazily built DFA for the finite part of the grammar, while
// recursion (nested JSON) still works, each depth being new states.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace meshlm::grammar {

// 256 bits: the bytes an element matches.
struct ByteSet {
  std::array<uint64_t, 4> w{};
  static ByteSet of(uint8_t b) {
    ByteSet s;
    s.add(b);
    return s;
  }
  static ByteSet range(uint8_t lo, uint8_t hi) {
    ByteSet s;
    for (int b = lo; b <= hi; ++b) s.add(uint8_t(b));
    return s;
  }
  void add(uint8_t b) { w[b >> 6] |= uint64_t{1} << (b & 63); }
  void add(const ByteSet& o) {
    for (int i = 0; i < 4; ++i) w[size_t(i)] |= o.w[size_t(i)];
  }
  bool has(uint8_t b) const { return (w[b >> 6] >> (b & 63)) & 1; }
  bool operator==(const ByteSet&) const = default;
};

using Seq = std::vector<int32_t>;  // the elements of one alternative

struct Grammar {
  // Element encoding in `code`: >= 0 a rule id; kEnd ends an alternative; <= -2 the byte set
  // sets[-e - 2].
  static constexpr int32_t kEnd = -1;
  static int32_t set_index(int32_t e) { return -e - 2; }
  std::vector<ByteSet> sets;
  std::vector<int32_t> code;                    // every alternative, each followed by kEnd
  std::vector<std::vector<int32_t>> rule_alts;  // per rule: start offsets in `code`
  std::vector<std::string> rule_names;
  int32_t root = -1;

  // The grammar as text (GBNF-like), for debugging and error messages.
  std::string str() const;
};

class GrammarBuilder {
 public:
  // A rule to be defined later (for references that come before their definition).
  int32_t declare(std::string name);
  void define(int32_t rule, std::vector<Seq> alternatives);
  int32_t rule(std::string name, std::vector<Seq> alternatives) {
    int32_t r = declare(std::move(name));
    define(r, std::move(alternatives));
    return r;
  }
  int32_t set(const ByteSet& s);         // an element matching one byte of s
  int32_t byte(uint8_t b) { return set(ByteSet::of(b)); }
  Seq literal(std::string_view bytes);   // one element per byte
  bool defined(int32_t rule) const { return defined_[size_t(rule)]; }
  size_t rule_count() const { return alts_.size(); }

  // Checks that every rule is defined and that no rule can reach itself without consuming a
  // byte (left recursion, which a stack automaton cannot expand); throws Error("grammar").
  Grammar build(int32_t root) const;

 private:
  std::vector<ByteSet> sets_;
  std::vector<std::vector<Seq>> alts_;
  std::vector<std::string> names_;
  std::vector<bool> defined_;
};

// The allowed-token bitset of one step: bit i of words[i / 64] is token id i.
using MaskWords = std::vector<uint64_t>;

// Token ids as bytes, with prefix tries for walking the vocabulary against a state.
class Vocabulary {
 public:
  // token_bytes[i]: the bytes token i adds to the output; empty = never allowed (special tokens,
  // unused ids). eos: ids allowed (only) when the grammar is complete. n_ids: mask size (the
  // model's vocabulary, which may exceed the tokenizer's).
  Vocabulary(std::vector<std::string> token_bytes, std::vector<int32_t> eos, size_t n_ids);
  size_t n_ids() const { return n_ids_; }
  size_t words() const { return (n_ids_ + 63) / 64; }
  const std::string& bytes(int32_t id) const;
  bool is_eos(int32_t id) const;
  const std::vector<int32_t>& eos() const { return eos_; }
  size_t trie_nodes() const { return all_.nodes.size(); }

  // A pre-order trie: node i has depth >= 1, the byte that leads to it, the index just past its
  // subtree, and the tokens whose bytes end there (tokens[tok_begin, tok_end)); below[i]: the
  // bytes under it; its subtree's tokens are tokens[tok_begin, sub_end[i]).
  struct Node {
    uint8_t byte;
    uint16_t depth;
    uint32_t skip;
    uint32_t tok_begin, tok_end;
  };
  struct Trie {
    std::vector<Node> nodes;
    std::vector<int32_t> tokens;
    std::vector<ByteSet> below;
    std::vector<uint32_t> sub_end;
    size_t max_depth = 0;
  };
  // Plain string characters: printable ASCII but '"' and '\\'. A token made of at most
  // kMaxPlain of them is "plain"; inside a JSON string only its length matters.
  static constexpr size_t kMaxPlain = 64;
  static bool plain_byte(uint8_t b) { return b >= 0x20 && b < 0x7F && b != '"' && b != '\\'; }
  const Trie& all() const { return all_; }    // every token
  const Trie& rest() const { return rest_; }  // every token but the plain ones
  // The plain tokens of at most n bytes (n <= kMaxPlain).
  const MaskWords& plain_up_to(size_t n) const { return plain_le_[n]; }

 private:
  Trie build(const std::vector<int32_t>& ids) const;

  std::vector<std::string> bytes_;
  std::vector<int32_t> eos_;
  size_t n_ids_;
  Trie all_, rest_;
  std::vector<MaskWords> plain_le_;
  std::string empty_;
};

// The automaton of one grammar (shared by every request that uses the grammar; thread-safe).
class Automaton {
 public:
  static constexpr int32_t kDead = -1;
  // More than max_states states (each up to 1 KiB of transitions) throws Error("grammar"): a
  // bound on what one hostile schema can make the server hold.
  explicit Automaton(Grammar grammar, size_t max_states = 200'000);
  const Grammar& grammar() const { return g_; }

  int32_t start();
  int32_t next(int32_t state, uint8_t byte);
  int32_t advance(int32_t state, std::string_view bytes);  // kDead when any byte is refused
  bool accepting(int32_t state);     // the input so far is a complete sentence
  bool can_continue(int32_t state);  // some byte may follow
  size_t state_count();
  size_t mask_count();  // states whose mask is cached (each vocab.words() x 8 bytes)

  // The tokens whose bytes are a valid continuation from `state` (+ vocab's EOS ids when the
  // state is accepting). Cached per state. `vocab` must be the same object on every call.
  std::shared_ptr<const MaskWords> mask(int32_t state, const Vocabulary& vocab);

 private:
  int32_t next_locked(int32_t state, uint8_t byte);
  const ByteSet& loops_locked(int32_t state);
  int plain_run_locked(int32_t state);
  void walk(const Vocabulary::Trie& trie, int32_t state, uint64_t* bits);
  int32_t node(int32_t pos, int32_t parent);
  void expand(int32_t pos, int32_t parent, std::vector<int32_t>& out, int depth);
  int32_t intern_state(std::vector<int32_t>& stacks);

  Grammar g_;
  size_t max_states_;
  std::mutex mutex_;
  // Stack nodes: (pos, parent); node 0 is the empty stack.
  std::vector<std::pair<int32_t, int32_t>> nodes_;
  std::unordered_map<uint64_t, int32_t> node_ids_;
  // States: sorted unique stack-node ids.
  struct State {
    std::vector<int32_t> stacks;
    std::unique_ptr<int32_t[]> next;  // 256 entries once the state has been stepped from
    std::shared_ptr<const MaskWords> mask;
    ByteSet loops;  // bytes that lead back to this state (once loops_known)
    bool loops_known = false;
    // How many plain characters in a row are sure to be accepted, each plain byte leading to one
    // same state, past which none is (kMaxPlain: at least that many; 0: not such a state); -1:
    // unknown.
    int16_t plain_run = -1;
    bool accepting = false;
  };
  std::vector<State> states_;
  size_t masks_ = 0;
  std::unordered_map<uint64_t, std::vector<int32_t>> state_ids_;  // hash -> candidate ids
  int32_t start_ = -2;
  const Vocabulary* vocab_ = nullptr;
  std::vector<int32_t> scratch_;
};

// One request's position in a grammar.
class Matcher {
 public:
  Matcher(std::shared_ptr<Automaton> automaton, std::shared_ptr<const Vocabulary> vocab);
  std::shared_ptr<const MaskWords> mask() const;
  // Advances by the token's bytes; false (and no change) when the token is not allowed. An EOS
  // token is accepted only when the grammar is complete, and ends the match.
  bool accept(int32_t token);
  bool accept_bytes(std::string_view bytes);
  bool complete() const;  // the output so far is a complete sentence
  bool finished() const { return finished_; }  // EOS accepted
  int32_t state() const { return state_; }

 private:
  std::shared_ptr<Automaton> automaton_;
  std::shared_ptr<const Vocabulary> vocab_;
  int32_t state_;
  bool finished_ = false;
};

}  // namespace meshlm::grammar
