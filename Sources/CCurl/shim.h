#include <curl/curl.h>

/* libcurl's setopt and getinfo functions are variadic, which Swift cannot call:
   these typed wrappers give each argument type a fixed signature. */

typedef size_t (*pjg_curl_data_callback)(char *buffer, size_t size, size_t count, void *context);
typedef int (*pjg_curl_socket_callback)(CURL *easy, curl_socket_t socket, int what, void *context, void *socket_context);
typedef int (*pjg_curl_timer_callback)(CURLM *multi, long milliseconds, void *context);

static inline CURLcode pjg_easy_setopt_long(CURL *handle, CURLoption option, long value) {
    return curl_easy_setopt(handle, option, value);
}

static inline CURLcode pjg_easy_setopt_string(CURL *handle, CURLoption option, const char *value) {
    return curl_easy_setopt(handle, option, value);
}

static inline CURLcode pjg_easy_setopt_pointer(CURL *handle, CURLoption option, void *value) {
    return curl_easy_setopt(handle, option, value);
}

static inline CURLcode pjg_easy_setopt_off_t(CURL *handle, CURLoption option, curl_off_t value) {
    return curl_easy_setopt(handle, option, value);
}

static inline CURLcode pjg_easy_setopt_data_callback(CURL *handle, CURLoption option, pjg_curl_data_callback value) {
    return curl_easy_setopt(handle, option, value);
}

static inline CURLcode pjg_easy_getinfo_long(CURL *handle, CURLINFO info, long *value) {
    return curl_easy_getinfo(handle, info, value);
}

static inline CURLcode pjg_easy_getinfo_pointer(CURL *handle, CURLINFO info, void **value) {
    return curl_easy_getinfo(handle, info, (char **)value);
}

static inline CURLMcode pjg_multi_setopt_long(CURLM *handle, CURLMoption option, long value) {
    return curl_multi_setopt(handle, option, value);
}

static inline CURLMcode pjg_multi_setopt_pointer(CURLM *handle, CURLMoption option, void *value) {
    return curl_multi_setopt(handle, option, value);
}

static inline CURLMcode pjg_multi_setopt_socket_callback(CURLM *handle, pjg_curl_socket_callback value) {
    return curl_multi_setopt(handle, CURLMOPT_SOCKETFUNCTION, value);
}

static inline CURLMcode pjg_multi_setopt_timer_callback(CURLM *handle, pjg_curl_timer_callback value) {
    return curl_multi_setopt(handle, CURLMOPT_TIMERFUNCTION, value);
}
