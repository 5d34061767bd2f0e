// status: the lock status of a Latch account from C++, with the handle and the returned strings owned
// by RAII types, and the config given as a string.
//
//   c++ -std=c++17 status.cpp $(pkg-config --cflags --libs lockserver) -o status
//   LOCKSERVER_CONFIG="$(cat lockserver.conf)" ./status ACCOUNT_ID [OPERATION_ID]
#include <lockserver.h>

#include <cstdlib>
#include <iostream>
#include <memory>
#include <stdexcept>
#include <string>

namespace {

struct Closer {
    void operator()(lockserver *h) const { lockserver_close(h); }
};
struct Freer {
    void operator()(char *s) const { lockserver_string_free(s); }
};
using Handle = std::unique_ptr<lockserver, Closer>;
using String = std::unique_ptr<char, Freer>;

std::string failure(lockserver_result rc) {
    String why(lockserver_last_error_message());
    return std::string(lockserver_result_message(rc)) + (why ? std::string(": ") + why.get() : "");
}

Handle open_from(const std::string &toml) {
    lockserver *raw = nullptr;
    lockserver_result rc = lockserver_open_config_str(toml.c_str(), &raw);
    if (rc != LOCKSERVER_OK) throw std::runtime_error(failure(rc));
    return Handle(raw);
}

}  // namespace

int main(int argc, char **argv) {
    const char *config = std::getenv("LOCKSERVER_CONFIG");
    if (argc < 2 || argc > 3 || !config) {
        std::cerr << "usage: LOCKSERVER_CONFIG=\"...\" " << argv[0] << " ACCOUNT_ID [OPERATION_ID]\n";
        return 3;
    }
    try {
        Handle ls = open_from(config);
        lockserver_access access;
        lockserver_result rc =
            lockserver_status(ls.get(), argv[1], argc == 3 ? argv[2] : nullptr, false, &access, nullptr);
        if (rc != LOCKSERVER_OK) throw std::runtime_error(failure(rc));
        bool locked = access == LOCKSERVER_ACCESS_LOCKED;
        std::cout << (locked ? "locked" : "open") << " (liblockserver " << lockserver_version() << ")\n";
        return locked ? 1 : 0;
    } catch (const std::exception &e) {
        std::cerr << "error: " << e.what() << "\n";
        return 3;
    }
}
