/* Parsers of the system API's replies, fed with replies captured from a real
 * nats-server 2.9.10 (operator mode, full resolver; a 3-node cluster "C" with
 * servers c0..c2, and a standalone "obs1" with and without JetStream). */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "obsindex.h"
#include "observe-parse.h"
#include "observe.h"
#include "util.h"

/* ---- captured replies (JSON as the server sent it) ---- */

static const char VARZ_CLUSTER[] =
        "{\"server\":{\"name\":\"c0\",\"host\":\"127.0.0.1\",\"id\":\"NBT2S77VBD4RHQ6MMGKCDCV6SR4IFOC7VI3PEHU"
        "AVVBBGCMBI3OA2V6I\",\"cluster\":\"C\",\"ver\":\"2.9.10\",\"seq\":93,\"jetstream\":true,\"time\":\"20"
        "26-11-25T13:37:08.819391399Z\"},\"data\":{\"server_id\":\"NBT2S77VBD4RHQ6MMGKCDCV6SR4IFOC7VI3PEHUAVV"
        "BBGCMBI3OA2V6I\",\"server_name\":\"c0\",\"version\":\"2.9.10\",\"proto\":1,\"go\":\"go1.19.8\",\"hos"
        "t\":\"127.0.0.1\",\"port\":41575,\"auth_required\":true,\"connect_urls\":[\"127.0.0.1:41575\",\"127."
        "0.0.1:44025\",\"127.0.0.1:46843\"],\"max_connections\":65536,\"ping_interval\":120000000000,\"ping_m"
        "ax\":2,\"http_host\":\"127.0.0.1\",\"http_port\":0,\"http_base_path\":\"\",\"https_port\":0,\"auth_t"
        "imeout\":2,\"max_control_line\":4096,\"max_payload\":1048576,\"max_pending\":67108864,\"cluster\":{\""
        "name\":\"C\",\"addr\":\"127.0.0.1\",\"cluster_port\":51975,\"auth_timeout\":2,\"urls\":[\"127.0.0.1:"
        "55525\",\"127.0.0.1:56803\"],\"tls_timeout\":2},\"gateway\":{},\"leaf\":{},\"mqtt\":{},\"websocket\""
        ":{},\"jetstream\":{\"config\":{\"max_memory\":1000000000,\"max_storage\":10000000000,\"store_dir\":\""
        "/tmp/obs/s3/c0/js/jetstream\",\"compress_ok\":true},\"stats\":{\"memory\":0,\"storage\":0,\"reserved"
        "_memory\":0,\"reserved_storage\":0,\"accounts\":2,\"ha_assets\":1,\"api\":{\"total\":0,\"errors\":0}"
        "},\"meta\":{\"name\":\"C\",\"leader\":\"c2\",\"peer\":\"WA4JCidV\",\"cluster_size\":3}},\"tls_timeou"
        "t\":2,\"write_deadline\":10000000000,\"start\":\"2026-11-25T13:36:56.333455828Z\",\"now\":\"2026-11-"
        "25T13:37:08.819328345Z\",\"uptime\":\"12s\",\"mem\":15130624,\"cores\":2,\"gomaxprocs\":2,\"cpu\":0,"
        "\"connections\":4,\"total_connections\":8,\"routes\":2,\"remotes\":2,\"leafnodes\":0,\"in_msgs\":94,"
        "\"out_msgs\":172,\"in_bytes\":41196,\"out_bytes\":84763,\"slow_consumers\":0,\"subscriptions\":179,\""
        "http_req_stats\":{},\"config_load_time\":\"2026-11-25T13:36:56.333455828Z\",\"trusted_operators_jwt\""
        ":[\"eyJ0eXAiOiJKV1QiLCJhbGciOiJlZDI1NTE5LW5rZXkifQ.eyJpYXQiOjE3OTU2MTM4MTQsImlzcyI6Ik9CNTNZUkNGUUdVS"
        "FdWNlNPSDNUM0lYWDVYQVFUWFI1T1JOTDZJRzQ3VDNZM1g0Tkk0TDRMMlhTIiwic3ViIjoiT0I1M1lSQ0ZRR1VIV1Y2U09IM1QzS"
        "VhYNVhBUVRYUjVPUk5MNklHNDdUM1kzWDROSTRMNEwyWFMiLCJuYW1lIjoiT1AiLCJuYXRzIjp7InNpZ25pbmdfa2V5cyI6WyJPQ"
        "lZYVjNRV01LS1pLRTVDWEtWRzNYTUYzTlM3VTYzRVJHWUdSWk5QVlBDRUVCVEhHVE9EUURXRCJdLCJzeXN0ZW1fYWNjb3VudCI6I"
        "kFDNU9aN1YzNkpITDNVTFVJVVlNSEtSWTNKT0tFUE5MU1E3NkRTTjNTMzJWRldFSFNXNktKMlMzIiwidHlwZSI6Im9wZXJhdG9yI"
        "iwidmVyc2lvbiI6Mn0sImp0aSI6IkI0R1E1WE9BRFBJT1RJQVpTWjUyUkZVNUFHSUwyQVBLUUxEV1VERFRERkgzWlNUNVNYUFEif"
        "Q.cADjVaQY_0lsHl4LqzsOyCznF_gOiMmRIDbkTn7pHSr6D-Hs1GWaVv7ug3MEImWwIJXHP-suYAVYVjelC2nMBQ\"],\"truste"
        "d_operators_claim\":[{\"jti\":\"B4GQ5XOADPIOTIAZSZ52RFU5AGIL2APKQLDWUDDTDFH3ZST5SXPQ\",\"iat\":17956"
        "13814,\"iss\":\"OB53YRCFQGUHWV6SOH3T3IXX5XAQTXR5ORNL6IG47T3Y3X4NI4L4L2XS\",\"name\":\"OP\",\"sub\":\""
        "OB53YRCFQGUHWV6SOH3T3IXX5XAQTXR5ORNL6IG47T3Y3X4NI4L4L2XS\",\"nats\":{\"signing_keys\":[\"OBVXV3QWMKK"
        "ZKE5CXKVG3XMF3NS7U63ERGYGRZNPVPCEEBTHGTODQDWD\"],\"system_account\":\"AC5OZ7V36JHL3ULUIUYMHKRY3JOKEP"
        "NLSQ76DSN3S32VFWEHSW6KJ2S3\",\"type\":\"operator\",\"version\":2}}],\"system_account\":\"AC5OZ7V36JH"
        "L3ULUIUYMHKRY3JOKEPNLSQ76DSN3S32VFWEHSW6KJ2S3\"}}";

static const char VARZ_NO_JETSTREAM[] =
        "{\"server\":{\"name\":\"obs1\",\"host\":\"127.0.0.1\",\"id\":\"NCSMRRN522E3APB5IEYHWG7WP6MBYQ3OA37EL"
        "TXJ36QMFBUAT65WH4WI\",\"ver\":\"2.9.10\",\"seq\":21,\"jetstream\":false,\"time\":\"2026-11-25T13:37:"
        "26.198945844Z\"},\"data\":{\"server_id\":\"NCSMRRN522E3APB5IEYHWG7WP6MBYQ3OA37ELTXJ36QMFBUAT65WH4WI\""
        ",\"server_name\":\"obs1\",\"version\":\"2.9.10\",\"proto\":1,\"go\":\"go1.19.8\",\"host\":\"127.0.0."
        "1\",\"port\":34149,\"auth_required\":true,\"max_connections\":65536,\"ping_interval\":120000000000,\""
        "ping_max\":2,\"http_host\":\"127.0.0.1\",\"http_port\":-1,\"http_base_path\":\"\",\"https_port\":0,\""
        "auth_timeout\":2,\"max_control_line\":4096,\"max_payload\":1048576,\"max_pending\":67108864,\"cluste"
        "r\":{},\"gateway\":{},\"leaf\":{},\"mqtt\":{},\"websocket\":{},\"jetstream\":{},\"tls_timeout\":2,\""
        "write_deadline\":10000000000,\"start\":\"2026-11-25T13:37:24.938570767Z\",\"now\":\"2026-11-25T13:37"
        ":26.19888216Z\",\"uptime\":\"1s\",\"mem\":12496896,\"cores\":2,\"gomaxprocs\":2,\"cpu\":0,\"connecti"
        "ons\":2,\"total_connections\":2,\"routes\":0,\"remotes\":0,\"leafnodes\":0,\"in_msgs\":0,\"out_msgs\""
        ":0,\"in_bytes\":0,\"out_bytes\":0,\"slow_consumers\":0,\"subscriptions\":54,\"http_req_stats\":{},\""
        "config_load_time\":\"2026-11-25T13:37:24.938570767Z\",\"trusted_operators_jwt\":[\"eyJ0eXAiOiJKV1QiL"
        "CJhbGciOiJlZDI1NTE5LW5rZXkifQ.eyJpYXQiOjE3OTU2MTM4NDQsImlzcyI6Ik9CUk1XSEk3TklQSVVFWkdPSlAyVTZCMlFGWD"
        "RMU0xUTEw3UDRTVzRNNU8zT1o0NkhGSDM3TEQ1Iiwic3ViIjoiT0JSTVdISTdOSVBJVUVaR09KUDJVNkIyUUZYNExTTFRMTDdQNF"
        "NXNE01TzNPWjQ2SEZIMzdMRDUiLCJuYW1lIjoiT1AiLCJuYXRzIjp7InNpZ25pbmdfa2V5cyI6WyJPQ1QzR1REQlBUQlpZUkM3Tk"
        "NXV0RYTjdONFFGMkUyVU9EQVJQTUVPVEM0R1pHVUwzTkFFVUlSWiJdLCJzeXN0ZW1fYWNjb3VudCI6IkFDTVQyQ0xQRVdJWFRZU0"
        "9CQjRBM1lENFhZMkxGSjJUR1gyWlpGWE5TV0VLVkNGN0NWMjVWNU4zIiwidHlwZSI6Im9wZXJhdG9yIiwidmVyc2lvbiI6Mn0sIm"
        "p0aSI6IlZWTkdWSFZUTkZQUllXQ0g2TldTUDdTTE5MQkk3QjVIUjJOWlVIUENHWkZDRUVDNjdFUUEifQ.po6fIhJ35stzdbinuNn"
        "DYty2j3J7xMPiH6XSzXwai09evLjhHZ0AT2UNijue9_amkeG755E4FRijjnE3ctlVAQ\"],\"trusted_operators_claim\":["
        "{\"jti\":\"VVNGVHVTNFPRYWCH6NWSP7SLNLBI7B5HR2NZUHPCGZFCEEC67EQA\",\"iat\":1795613844,\"iss\":\"OBRMW"
        "HI7NIPIUEZGOJP2U6B2QFX4LSLTLL7P4SW4M5O3OZ46HFH37LD5\",\"name\":\"OP\",\"sub\":\"OBRMWHI7NIPIUEZGOJP2"
        "U6B2QFX4LSLTLL7P4SW4M5O3OZ46HFH37LD5\",\"nats\":{\"signing_keys\":[\"OCT3GTDBPTBZYRC7NCWWDXN7N4QF2E2"
        "UODARPMEOTC4GZGUL3NAEUIRZ\"],\"system_account\":\"ACMT2CLPEWIXTYSOBB4A3YD4XY2LFJ2TGX2ZZFXNSWEKVCF7CV"
        "25V5N3\",\"type\":\"operator\",\"version\":2}}],\"system_account\":\"ACMT2CLPEWIXTYSOBB4A3YD4XY2LFJ2"
        "TGX2ZZFXNSWEKVCF7CV25V5N3\"}}";

static const char INFO_LOADED[] =
        "{\"server\":{\"name\":\"c0\",\"host\":\"127.0.0.1\",\"id\":\"NBT2S77VBD4RHQ6MMGKCDCV6SR4IFOC7VI3PEHU"
        "AVVBBGCMBI3OA2V6I\",\"cluster\":\"C\",\"ver\":\"2.9.10\",\"seq\":75,\"jetstream\":true,\"time\":\"20"
        "26-11-25T13:37:07.801764573Z\"},\"data\":{\"account_name\":\"AABRJI7ZSZ5ZJEVJVN5744QPEZ32A2YHMCKK4WT"
        "ABXTQTBQO5U3LHBPH\",\"update_time\":\"2026-11-25T13:37:00.764963729Z\",\"expired\":false,\"complete\""
        ":true,\"jetstream_enabled\":true,\"leafnode_connections\":0,\"client_connections\":1,\"subscriptions"
        "\":4,\"imports\":[{\"subject\":\"$SYS.REQ.ACCOUNT.PING.CONNZ\",\"account\":\"AC5OZ7V36JHL3ULUIUYMHKR"
        "Y3JOKEPNLSQ76DSN3S32VFWEHSW6KJ2S3\",\"to\":\"$SYS.REQ.ACCOUNT.AABRJI7ZSZ5ZJEVJVN5744QPEZ32A2YHMCKK4W"
        "TABXTQTBQO5U3LHBPH.CONNZ\",\"type\":\"service\",\"invalid\":false,\"share\":false,\"tracking\":false"
        "},{\"subject\":\"$SYS.REQ.SERVER.PING.CONNZ\",\"account\":\"AC5OZ7V36JHL3ULUIUYMHKRY3JOKEPNLSQ76DSN3"
        "S32VFWEHSW6KJ2S3\",\"to\":\"$SYS.REQ.ACCOUNT.AABRJI7ZSZ5ZJEVJVN5744QPEZ32A2YHMCKK4WTABXTQTBQO5U3LHBP"
        "H.CONNZ\",\"type\":\"service\",\"invalid\":false,\"share\":false,\"tracking\":false},{\"subject\":\""
        "$SYS.REQ.ACCOUNT.PING.STATZ\",\"account\":\"AC5OZ7V36JHL3ULUIUYMHKRY3JOKEPNLSQ76DSN3S32VFWEHSW6KJ2S3"
        "\",\"to\":\"$SYS.REQ.ACCOUNT.AABRJI7ZSZ5ZJEVJVN5744QPEZ32A2YHMCKK4WTABXTQTBQO5U3LHBPH.STATZ\",\"type"
        "\":\"service\",\"invalid\":false,\"share\":false,\"tracking\":false},{\"subject\":\"$JS.API.\\u003e\""
        ",\"account\":\"AC5OZ7V36JHL3ULUIUYMHKRY3JOKEPNLSQ76DSN3S32VFWEHSW6KJ2S3\",\"to\":\"$JS.API.\\u003e\""
        ",\"type\":\"service\",\"invalid\":false,\"share\":false,\"tracking\":false}],\"jwt\":\"eyJ0eXAiOiJKV"
        "1QiLCJhbGciOiJlZDI1NTE5LW5rZXkifQ.eyJpYXQiOjE3OTU2MTM4MTQsImlzcyI6Ik9CVlhWM1FXTUtLWktFNUNYS1ZHM1hNRj"
        "NOUzdVNjNFUkdZR1JaTlBWUENFRUJUSEdUT0RRRFdEIiwic3ViIjoiQUFCUkpJN1pTWjVaSkVWSlZONTc0NFFQRVozMkEyWUhNQ0"
        "tLNFdUQUJYVFFUQlFPNVUzTEhCUEgiLCJuYW1lIjoiQUNDMCIsIm5hdHMiOnsibGltaXRzIjp7InN1YnMiOi0xLCJkYXRhIjotMS"
        "wicGF5bG9hZCI6LTEsImltcG9ydHMiOi0xLCJleHBvcnRzIjotMSwid2lsZGNhcmRzIjp0cnVlLCJjb25uIjotMSwibGVhZiI6LT"
        "EsIm1lbV9zdG9yYWdlIjoxMDQ4NTc2LCJkaXNrX3N0b3JhZ2UiOjEwNDg1NzYwLCJzdHJlYW1zIjotMSwiY29uc3VtZXIiOi0xfS"
        "wiZGVmYXVsdF9wZXJtaXNzaW9ucyI6eyJwdWIiOnt9LCJzdWIiOnt9fSwidHlwZSI6ImFjY291bnQiLCJ2ZXJzaW9uIjoyfSwian"
        "RpIjoiM05TM1BHMklITENDVzY3MktXU0lGTE5NUEdRM0hJUTJMRUtVUlZXTlI1UTdFU1FUT05SQSJ9.4QBg_J78ukE2hwupAKaVJ"
        "RiHhvOQWoFb3m3JixHtmM0Cx2fp4aERkVSIAftsU5fdGM6c7GA1AhVV9O5e11LxAA\",\"issuer_key\":\"OBVXV3QWMKKZKE5"
        "CXKVG3XMF3NS7U63ERGYGRZNPVPCEEBTHGTODQDWD\",\"name_tag\":\"ACC0\",\"decoded_jwt\":{\"jti\":\"3NS3PG2"
        "IHLCCW672KWSIFLNMPGQ3HIQ2LEKURVWNR5Q7ESQTONRA\",\"iat\":1795613814,\"iss\":\"OBVXV3QWMKKZKE5CXKVG3XM"
        "F3NS7U63ERGYGRZNPVPCEEBTHGTODQDWD\",\"name\":\"ACC0\",\"sub\":\"AABRJI7ZSZ5ZJEVJVN5744QPEZ32A2YHMCKK"
        "4WTABXTQTBQO5U3LHBPH\",\"nats\":{\"limits\":{\"subs\":-1,\"data\":-1,\"payload\":-1,\"imports\":-1,\""
        "exports\":-1,\"wildcards\":true,\"conn\":-1,\"leaf\":-1,\"mem_storage\":1048576,\"disk_storage\":104"
        "85760,\"streams\":-1,\"consumer\":-1},\"default_permissions\":{\"pub\":{},\"sub\":{}},\"type\":\"acc"
        "ount\",\"version\":2}},\"sublist_stats\":{\"num_subscriptions\":4,\"num_cache\":0,\"num_inserts\":4,"
        "\"num_removes\":0,\"num_matches\":0,\"cache_hit_rate\":0,\"max_fanout\":0,\"avg_fanout\":0}}}";

static const char INFO_NOT_LOADED[] =
        "{\"server\":{\"name\":\"c2\",\"host\":\"127.0.0.1\",\"id\":\"NADFVF66YYFOYAYV3ZCNCUCXPR5IA5O4C6RTX6Y"
        "FMSZEYKWSO76TZVN4\",\"cluster\":\"C\",\"ver\":\"2.9.10\",\"seq\":37,\"jetstream\":true,\"time\":\"20"
        "26-11-25T13:37:07.801858923Z\"},\"data\":null,\"error\":{\"code\":500,\"description\":\"Account AABR"
        "JI7ZSZ5ZJEVJVN5744QPEZ32A2YHMCKK4WTABXTQTBQO5U3LHBPH does not exist\"}}";

static const char INFO_INCOMPLETE[] =
        "{\"server\":{\"name\":\"obs1\",\"host\":\"127.0.0.1\",\"id\":\"NAG7ARISLQI4QRLIFXZKGZMUCFQC6ABANDSRJ"
        "4CS7IQC25N7Y5IAFNQB\",\"ver\":\"2.9.10\",\"seq\":59,\"jetstream\":true,\"time\":\"2026-11-25T13:38:3"
        "3.825781799Z\"},\"data\":{\"account_name\":\"AB2OUPJPKDWHRH6KLFAVYWX6YSQG3GVAFLH6PDC6OVW7UYUD2AAXOJR"
        "A\",\"update_time\":\"2026-11-25T13:38:33.010862305Z\",\"expired\":false,\"complete\":false,\"jetstr"
        "eam_enabled\":true,\"leafnode_connections\":0,\"client_connections\":1,\"subscriptions\":4,\"imports"
        "\":[{\"subject\":\"$SYS.REQ.ACCOUNT.PING.CONNZ\",\"account\":\"ACL2WJG7SVFFUWPCDEO3QEOLGLXGH77CE3VA6"
        "GMGRTYNTF327BYVJQLS\",\"to\":\"$SYS.REQ.ACCOUNT.AB2OUPJPKDWHRH6KLFAVYWX6YSQG3GVAFLH6PDC6OVW7UYUD2AAX"
        "OJRA.CONNZ\",\"type\":\"service\",\"invalid\":false,\"share\":false,\"tracking\":false},{\"subject\""
        ":\"$SYS.REQ.SERVER.PING.CONNZ\",\"account\":\"ACL2WJG7SVFFUWPCDEO3QEOLGLXGH77CE3VA6GMGRTYNTF327BYVJQ"
        "LS\",\"to\":\"$SYS.REQ.ACCOUNT.AB2OUPJPKDWHRH6KLFAVYWX6YSQG3GVAFLH6PDC6OVW7UYUD2AAXOJRA.CONNZ\",\"ty"
        "pe\":\"service\",\"invalid\":false,\"share\":false,\"tracking\":false},{\"subject\":\"$SYS.REQ.ACCOU"
        "NT.PING.STATZ\",\"account\":\"ACL2WJG7SVFFUWPCDEO3QEOLGLXGH77CE3VA6GMGRTYNTF327BYVJQLS\",\"to\":\"$S"
        "YS.REQ.ACCOUNT.AB2OUPJPKDWHRH6KLFAVYWX6YSQG3GVAFLH6PDC6OVW7UYUD2AAXOJRA.STATZ\",\"type\":\"service\""
        ",\"invalid\":false,\"share\":false,\"tracking\":false},{\"subject\":\"$JS.API.\\u003e\",\"account\":"
        "\"ACL2WJG7SVFFUWPCDEO3QEOLGLXGH77CE3VA6GMGRTYNTF327BYVJQLS\",\"to\":\"$JS.API.\\u003e\",\"type\":\"s"
        "ervice\",\"invalid\":false,\"share\":false,\"tracking\":false}],\"jwt\":\"eyJ0eXAiOiJKV1QiLCJhbGciOi"
        "JlZDI1NTE5LW5rZXkifQ.eyJpYXQiOjE3OTU2MTM5MTIsImlzcyI6Ik9CUEtJNk5aREhaM0w1VFJTUzdNWUM2TDQ0NkdPN0NaNDd"
        "aQ1o3TEJRMlNWN1hCTTZBU0lSQ0dWIiwic3ViIjoiQUIyT1VQSlBLRFdIUkg2S0xGQVZZV1g2WVNRRzNHVkFGTEg2UERDNk9WVzd"
        "VWVVEMkFBWE9KUkEiLCJuYW1lIjoiQUNDMCIsIm5hdHMiOnsibGltaXRzIjp7InN1YnMiOi0xLCJkYXRhIjotMSwicGF5bG9hZCI"
        "6LTEsImltcG9ydHMiOi0xLCJleHBvcnRzIjotMSwid2lsZGNhcmRzIjp0cnVlLCJjb25uIjotMSwibGVhZiI6LTEsIm1lbV9zdG9"
        "yYWdlIjo1MDAwMDAwMDAwLCJkaXNrX3N0b3JhZ2UiOjEwNDg1NzYwLCJzdHJlYW1zIjotMSwiY29uc3VtZXIiOi0xfSwiZGVmYXV"
        "sdF9wZXJtaXNzaW9ucyI6eyJwdWIiOnt9LCJzdWIiOnt9fSwidHlwZSI6ImFjY291bnQiLCJ2ZXJzaW9uIjoyfSwianRpIjoiWkl"
        "CUlFKM0xKT0JHQkRSWVJJSUxETUhUUVpUNUJPQzY1VDdCRVNXNEE2NUhKM1ZJVTVJUSJ9.iVJDkPM6K7Y5S_hM987JY_PyLZj3G6"
        "oqgHhod-BxyROjgE057nbHKERCfLRbMMEKNxKs74lhsCmHkVxG_ANuBA\",\"issuer_key\":\"OBPKI6NZDHZ3L5TRSS7MYC6L"
        "446GO7CZ47ZCZ7LBQ2SV7XBM6ASIRCGV\",\"name_tag\":\"ACC0\",\"decoded_jwt\":{\"jti\":\"ZIBRQJ3LJOBGBDRY"
        "RIILDMHTQZT5BOC65T7BESW4A65HJ3VIU5IQ\",\"iat\":1795613912,\"iss\":\"OBPKI6NZDHZ3L5TRSS7MYC6L446GO7CZ"
        "47ZCZ7LBQ2SV7XBM6ASIRCGV\",\"name\":\"ACC0\",\"sub\":\"AB2OUPJPKDWHRH6KLFAVYWX6YSQG3GVAFLH6PDC6OVW7U"
        "YUD2AAXOJRA\",\"nats\":{\"limits\":{\"subs\":-1,\"data\":-1,\"payload\":-1,\"imports\":-1,\"exports\""
        ":-1,\"wildcards\":true,\"conn\":-1,\"leaf\":-1,\"mem_storage\":5000000000,\"disk_storage\":10485760,"
        "\"streams\":-1,\"consumer\":-1},\"default_permissions\":{\"pub\":{},\"sub\":{}},\"type\":\"account\""
        ",\"version\":2}},\"sublist_stats\":{\"num_subscriptions\":4,\"num_cache\":0,\"num_inserts\":8,\"num_"
        "removes\":4,\"num_matches\":0,\"cache_hit_rate\":0,\"max_fanout\":0,\"avg_fanout\":0}}}";

static const char JSZ_USAGE[] =
        "{\"server\":{\"name\":\"c0\",\"host\":\"127.0.0.1\",\"id\":\"NBT2S77VBD4RHQ6MMGKCDCV6SR4IFOC7VI3PEHU"
        "AVVBBGCMBI3OA2V6I\",\"cluster\":\"C\",\"ver\":\"2.9.10\",\"seq\":136,\"jetstream\":true,\"time\":\"2"
        "026-11-25T13:37:19.860817963Z\"},\"data\":{\"name\":\"ACC2\",\"id\":\"AD6VLJIAIC6TQEJYXTPBBH6265WOE2"
        "YDLODGICM34W2YYP2POE6IIA5I\",\"memory\":51900,\"storage\":103300,\"reserved_memory\":184467440737095"
        "51615,\"reserved_storage\":18446744073709551615,\"accounts\":0,\"ha_assets\":0,\"api\":{\"total\":2,"
        "\"errors\":0}}}";

static const char JSZ_NOT_FOUND[] =
        "{\"server\":{\"name\":\"obs1\",\"host\":\"127.0.0.1\",\"id\":\"NAGV6MFU33T2NY2CQP2RT5HTX4HMXTPZDBPCP"
        "UJ3E74J7DKVJQ55DZ6T\",\"ver\":\"2.9.10\",\"seq\":36,\"jetstream\":true,\"time\":\"2026-11-25T13:27:0"
        "6.056363463Z\"},\"data\":null,\"error\":{\"code\":500,\"description\":\"account \\\"ACCWDLJQWXUJL5KN"
        "W4QQIIEIBFSUC5ZIXBJZN3G32TXBAXIEZKKMAS43\\\" not found\"}}";

static const char JSZ_NOT_JETSTREAM_ENABLED[] =
        "{\"server\":{\"name\":\"c0\",\"host\":\"127.0.0.1\",\"id\":\"NBT2S77VBD4RHQ6MMGKCDCV6SR4IFOC7VI3PEHU"
        "AVVBBGCMBI3OA2V6I\",\"cluster\":\"C\",\"ver\":\"2.9.10\",\"seq\":84,\"jetstream\":true,\"time\":\"20"
        "26-11-25T13:37:08.311626829Z\"},\"data\":null,\"error\":{\"code\":500,\"description\":\"account \\\""
        "AB6QHI7G6E36QEX6MLCPVF6NMST2AXAFCZMFWZY4TBOT7DQM72O5FD4O\\\" not jetstream enabled\"}}";

static const char JSZ_SERVER_JETSTREAM_OFF[] =
        "{\"server\":{\"name\":\"obs1\",\"host\":\"127.0.0.1\",\"id\":\"NCSMRRN522E3APB5IEYHWG7WP6MBYQ3OA37EL"
        "TXJ36QMFBUAT65WH4WI\",\"ver\":\"2.9.10\",\"seq\":31,\"jetstream\":false,\"time\":\"2026-11-25T13:37:"
        "26.862811706Z\"},\"data\":null,\"error\":{\"code\":500,\"description\":\"jetstream not enabled\"}}";

static const char PACK_MSG_ACC0[] =
        "AABRJI7ZSZ5ZJEVJVN5744QPEZ32A2YHMCKK4WTABXTQTBQO5U3LHBPH|eyJ0eXAiOiJKV1QiLCJhbGciOiJlZDI1NTE5LW5rZXk"
        "ifQ.eyJpYXQiOjE3OTU2MTM4MTQsImlzcyI6Ik9CVlhWM1FXTUtLWktFNUNYS1ZHM1hNRjNOUzdVNjNFUkdZR1JaTlBWUENFRUJU"
        "SEdUT0RRRFdEIiwic3ViIjoiQUFCUkpJN1pTWjVaSkVWSlZONTc0NFFQRVozMkEyWUhNQ0tLNFdUQUJYVFFUQlFPNVUzTEhCUEgi"
        "LCJuYW1lIjoiQUNDMCIsIm5hdHMiOnsibGltaXRzIjp7InN1YnMiOi0xLCJkYXRhIjotMSwicGF5bG9hZCI6LTEsImltcG9ydHMi"
        "Oi0xLCJleHBvcnRzIjotMSwid2lsZGNhcmRzIjp0cnVlLCJjb25uIjotMSwibGVhZiI6LTEsIm1lbV9zdG9yYWdlIjoxMDQ4NTc2"
        "LCJkaXNrX3N0b3JhZ2UiOjEwNDg1NzYwLCJzdHJlYW1zIjotMSwiY29uc3VtZXIiOi0xfSwiZGVmYXVsdF9wZXJtaXNzaW9ucyI6"
        "eyJwdWIiOnt9LCJzdWIiOnt9fSwidHlwZSI6ImFjY291bnQiLCJ2ZXJzaW9uIjoyfSwianRpIjoiM05TM1BHMklITENDVzY3MktX"
        "U0lGTE5NUEdRM0hJUTJMRUtVUlZXTlI1UTdFU1FUT05SQSJ9.4QBg_J78ukE2hwupAKaVJRiHhvOQWoFb3m3JixHtmM0Cx2fp4aE"
        "RkVSIAftsU5fdGM6c7GA1AhVV9O5e11LxAA";

static const char PACK_MSG_SYS[] =
        "AC5OZ7V36JHL3ULUIUYMHKRY3JOKEPNLSQ76DSN3S32VFWEHSW6KJ2S3|eyJ0eXAiOiJKV1QiLCJhbGciOiJlZDI1NTE5LW5rZXk"
        "ifQ.eyJpYXQiOjE3OTU2MTM4MTQsImlzcyI6Ik9CVlhWM1FXTUtLWktFNUNYS1ZHM1hNRjNOUzdVNjNFUkdZR1JaTlBWUENFRUJU"
        "SEdUT0RRRFdEIiwic3ViIjoiQUM1T1o3VjM2SkhMM1VMVUlVWU1IS1JZM0pPS0VQTkxTUTc2RFNOM1MzMlZGV0VIU1c2S0oyUzMi"
        "LCJuYW1lIjoiU1lTIiwibmF0cyI6eyJsaW1pdHMiOnsic3VicyI6LTEsImRhdGEiOi0xLCJwYXlsb2FkIjotMSwiaW1wb3J0cyI6"
        "LTEsImV4cG9ydHMiOi0xLCJ3aWxkY2FyZHMiOnRydWUsImNvbm4iOi0xLCJsZWFmIjotMX0sImRlZmF1bHRfcGVybWlzc2lvbnMi"
        "OnsicHViIjp7fSwic3ViIjp7fX0sInR5cGUiOiJhY2NvdW50IiwidmVyc2lvbiI6Mn0sImp0aSI6IkNSS0xCMzVWS0tBR0NIRzNP"
        "WVpQUFFWN041S0RFRUNWM0E2UUVXQUtQUEdXS1BGRE9YWlEifQ.XrDxh0mgaKFPgRsL-Nzu0419wRRfjFRB4NrlbRQ_tBHvcyKmA"
        "PcZhZqdG25JZS3wQvqIJkIOIpZD9U0nnE3PDw";

static const char JWT_SUB_MISMATCH[] =
        "eyJ0eXAiOiJKV1QiLCJhbGciOiJlZDI1NTE5LW5rZXkifQ.eyJpYXQiOjE3OTU2MTM4MTQsImlzcyI6Ik9CVlhWM1FXTUtLWktFN"
        "UNYS1ZHM1hNRjNOUzdVNjNFUkdZR1JaTlBWUENFRUJUSEdUT0RRRFdEIiwic3ViIjoiQUI2UUhJN0c2RTM2UUVYNk1MQ1BWRjZOT"
        "VNUMkFYQUZDWk1GV1pZNFRCT1Q3RFFNNzJPNUZENE8iLCJuYW1lIjoiQUNDMCIsIm5hdHMiOnsidHlwZSI6ImFjY291bnQiLCJ2Z"
        "XJzaW9uIjoyfX0.c2ln";
static const char JWT_USER_TYPE[] =
        "eyJ0eXAiOiJKV1QiLCJhbGciOiJlZDI1NTE5LW5rZXkifQ.eyJpYXQiOjE3OTU2MTM4MTQsImlzcyI6Ik9CVlhWM1FXTUtLWktFN"
        "UNYS1ZHM1hNRjNOUzdVNjNFUkdZR1JaTlBWUENFRUJUSEdUT0RRRFdEIiwic3ViIjoiQUFCUkpJN1pTWjVaSkVWSlZONTc0NFFQR"
        "VozMkEyWUhNQ0tLNFdUQUJYVFFUQlFPNVUzTEhCUEgiLCJuYW1lIjoiQUNDMCIsIm5hdHMiOnsidHlwZSI6InVzZXIiLCJ2ZXJza"
        "W9uIjoyfX0.c2ln";
static const char JWT_NO_IAT[] =
        "eyJ0eXAiOiJKV1QiLCJhbGciOiJlZDI1NTE5LW5rZXkifQ.eyJpc3MiOiJPQlZYVjNRV01LS1pLRTVDWEtWRzNYTUYzTlM3VTYzR"
        "VJHWUdSWk5QVlBDRUVCVEhHVE9EUURXRCIsInN1YiI6IkFBQlJKSTdaU1o1WkpFVkpWTjU3NDRRUEVaMzJBMllITUNLSzRXVEFCW"
        "FRRVEJRTzVVM0xIQlBIIiwibmFtZSI6IkFDQzAiLCJuYXRzIjp7InR5cGUiOiJhY2NvdW50IiwidmVyc2lvbiI6Mn19.c2ln";
static const char JWT_NOT_JSON[] = "eyJ0eXAiOiJKV1QiLCJhbGciOiJlZDI1NTE5LW5rZXkifQ.eyJpYXQiOg.c2ln";
static const char JWT_NO_NAME[] =
        "eyJ0eXAiOiJKV1QiLCJhbGciOiJlZDI1NTE5LW5rZXkifQ.eyJpYXQiOjE3OTU2MTM4MTQsImlzcyI6Ik9CVlhWM1FXTUtLWktFN"
        "UNYS1ZHM1hNRjNOUzdVNjNFUkdZR1JaTlBWUENFRUJUSEdUT0RRRFdEIiwic3ViIjoiQUFCUkpJN1pTWjVaSkVWSlZONTc0NFFQR"
        "VozMkEyWUhNQ0tLNFdUQUJYVFFUQlFPNVUzTEhCUEgiLCJuYXRzIjp7InR5cGUiOiJhY2NvdW50IiwidmVyc2lvbiI6Mn19.c2ln";
static const char JWT_ESCAPED_NAME[] =
        "eyJ0eXAiOiJKV1QiLCJhbGciOiJlZDI1NTE5LW5rZXkifQ.eyJpYXQiOjE3OTU2MTM4MTQsImlzcyI6Ik9CVlhWM1FXTUtLWktFN"
        "UNYS1ZHM1hNRjNOUzdVNjNFUkdZR1JaTlBWUENFRUJUSEdUT0RRRFdEIiwic3ViIjoiQUFCUkpJN1pTWjVaSkVWSlZONTc0NFFQR"
        "VozMkEyWUhNQ0tLNFdUQUJYVFFUQlFPNVUzTEhCUEgiLCJuYW1lIjoiQVx1MDBlOVwiQiIsIm5hdHMiOnsidHlwZSI6ImFjY291b"
        "nQiLCJ2ZXJzaW9uIjoyfX0.c2ln";

#define C0_ID "NBT2S77VBD4RHQ6MMGKCDCV6SR4IFOC7VI3PEHUAVVBBGCMBI3OA2V6I"
#define C2_ID "NADFVF66YYFOYAYV3ZCNCUCXPR5IA5O4C6RTX6YFMSZEYKWSO76TZVN4"
#define OPERATOR "OB53YRCFQGUHWV6SOH3T3IXX5XAQTXR5ORNL6IG47T3Y3X4NI4L4L2XS"
#define OPERATOR_SIGNER "OBVXV3QWMKKZKE5CXKVG3XMF3NS7U63ERGYGRZNPVPCEEBTHGTODQDWD"
#define SYSTEM_ACCOUNT "AC5OZ7V36JHL3ULUIUYMHKRY3JOKEPNLSQ76DSN3S32VFWEHSW6KJ2S3"
#define ACC0 "AABRJI7ZSZ5ZJEVJVN5744QPEZ32A2YHMCKK4WTABXTQTBQO5U3LHBPH"
#define ACC1 "AB6QHI7G6E36QEX6MLCPVF6NMST2AXAFCZMFWZY4TBOT7DQM72O5FD4O"
/* The start of a reply from c0, for hand-made replies. */
#define HDR "{\"server\":{\"id\":\"" C0_ID "\"},"

static void test_varz_cluster(void **state) {
        struct server_info s;
        char *why = NULL;
        assert_int_equal(observe_parse_varz(VARZ_CLUSTER, strlen(VARZ_CLUSTER), &s, &why), 0);
        assert_null(why);
        assert_string_equal(s.id, C0_ID);
        assert_string_equal(s.name, "c0");
        assert_string_equal(s.version, "2.9.10");
        assert_true(s.jetstream);
        assert_string_equal(s.operator_key, OPERATOR);
        assert_string_equal(s.system_account, SYSTEM_ACCOUNT);
        assert_non_null(s.trusted_keys);
        assert_string_equal(s.trusted_keys[0], OPERATOR);
        assert_string_equal(s.trusted_keys[1], OPERATOR_SIGNER);
        assert_null(s.trusted_keys[2]);
        assert_false(s.alone); /* routes: its peers answer too */
        server_info_clear(&s);
        server_info_clear(&s); /* cleared twice is harmless */
}

static void test_varz_no_jetstream(void **state) {
        struct server_info s;
        char *why = NULL;
        assert_int_equal(observe_parse_varz(VARZ_NO_JETSTREAM, strlen(VARZ_NO_JETSTREAM), &s, &why), 0);
        assert_string_equal(s.name, "obs1");
        assert_false(s.jetstream);
        assert_non_null(s.operator_key);
        assert_true(s.alone); /* no cluster, gateway or leaf node: nobody else answers */
        server_info_clear(&s);

        /* Without the data.jetstream object, the server header decides. */
        const char *hdr = "{\"server\":{\"id\":\"" C0_ID "\",\"jetstream\":true},\"data\":{}}";
        assert_int_equal(observe_parse_varz(hdr, strlen(hdr), &s, &why), 0);
        assert_true(s.jetstream);
        assert_false(s.alone); /* what it is linked to is not said: assume others */
        assert_null(s.operator_key);
        assert_null(s.trusted_keys[0]); /* not in operator mode: an empty list */
        assert_null(s.system_account);
        server_info_clear(&s);
}

static void expect_varz_error(const char *json, const char *needle) {
        struct server_info s;
        char *why = NULL;
        assert_int_equal(observe_parse_varz(json, strlen(json), &s, &why), -EBADMSG);
        assert_non_null(why);
        if (!strstr(why, needle))
                fail_msg("\"%s\" does not mention \"%s\"", why, needle);
        assert_null(s.name);
        assert_null(s.trusted_keys);
        free(why);
}

static void test_varz_malformed(void **state) {
        expect_varz_error("", "not JSON");
        expect_varz_error("{\"data\":", "not JSON");
        expect_varz_error("[1,2]", "not a JSON object");
        expect_varz_error("{\"server\":{\"id\":\"" C0_ID "\"}}", "no \"data\"");
        expect_varz_error("{\"data\":null,\"error\":{\"code\":503,\"description\":\"nope\"}}", "nope");
        expect_varz_error("{\"data\":{}}", "server.id");
        expect_varz_error("{\"server\":{\"id\":\"" ACC0 "\"},\"data\":{}}", "not a server public key");
        expect_varz_error("{\"server\":{\"id\":42},\"data\":{}}", "server.id");
        expect_varz_error(HDR "\"data\":{\"trusted_operators_claim\":{}}}",
                          "not an array");
        expect_varz_error(HDR "\"data\":{\"trusted_operators_claim\":[{}]}}",
                          "not an operator public key");
        expect_varz_error(HDR "\"data\":{\"trusted_operators_claim\":[{\"sub\":\"" OPERATOR
                          "\",\"nats\":{\"signing_keys\":[\"" ACC0 "\"]}}]}}",
                          "not an operator public key");
        expect_varz_error(HDR "\"data\":{\"trusted_operators_claim\":[{\"sub\":\"" OPERATOR
                          "\",\"nats\":{\"signing_keys\":\"x\"}}]}}",
                          "signing_keys is not an array");
}

static void test_accountz(void **state) {
        const char *json = "{\"server\":{\"id\":\"" C0_ID "\"},\"data\":{\"server_id\":\"" C0_ID
                           "\",\"accounts\":[\"" SYSTEM_ACCOUNT "\",\"$G\",\"" ACC0 "\"]}}";
        struct loaded_accounts l;
        char *why = NULL;
        assert_int_equal(observe_parse_accountz(json, strlen(json), &l, &why), 0);
        assert_string_equal(l.server_id, C0_ID);
        assert_int_equal(l.n, 2); /* "$G" is no account key */
        assert_true(loaded_accounts_has(&l, ACC0));
        assert_true(loaded_accounts_has(&l, SYSTEM_ACCOUNT));
        assert_false(loaded_accounts_has(&l, OPERATOR));
        loaded_accounts_clear(&l);

        const char *none = "{\"server\":{\"id\":\"" C0_ID "\"},\"data\":{\"accounts\":[]}}";
        assert_int_equal(observe_parse_accountz(none, strlen(none), &l, &why), 0);
        assert_int_equal(l.n, 0);
        assert_false(loaded_accounts_has(&l, ACC0));
        loaded_accounts_clear(&l);

        static const char *const bad[] = {
                "{\"data\":{\"accounts\":[]}}",
                "{\"server\":{\"id\":\"" C0_ID "\"},\"data\":{\"accounts\":{}}}",
                "{\"server\":{\"id\":\"" C0_ID "\"},\"data\":{\"accounts\":[1]}}",
                "{\"server\":{\"id\":\"" C0_ID "\"},\"data\":null,\"error\":{\"code\":500,\"description\":\"x\"}}",
        };
        for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
                assert_int_equal(observe_parse_accountz(bad[i], strlen(bad[i]), &l, &why), -EBADMSG);
                assert_non_null(why);
                assert_null(l.keys);
                free(why);
                why = NULL;
        }
}

static void test_varz_scoped_signing_key(void **state) {
        struct server_info s;
        char *why = NULL;
        const char *json = HDR "\"data\":{\"trusted_operators_claim\":[{\"sub\":\"" OPERATOR
                           "\",\"nats\":{\"signing_keys\":[{\"key\":\"" OPERATOR_SIGNER "\"}]}}]}}";
        assert_int_equal(observe_parse_varz(json, strlen(json), &s, &why), 0);
        assert_string_equal(s.trusted_keys[1], OPERATOR_SIGNER);
        server_info_clear(&s);
}

static void test_info(void **state) {
        struct server_account_state st;
        char *why = NULL;
        assert_int_equal(observe_parse_info(INFO_LOADED, strlen(INFO_LOADED), &st, &why), 0);
        assert_string_equal(st.server_id, C0_ID);
        assert_true(st.loaded);
        assert_true(st.complete);
        assert_true(st.jetstream_enabled);
        assert_int_equal(st.update_time_iat, 1795613814);
        assert_int_equal(st.connections, 1);
        assert_int_equal(st.leafnodes, 0);
        assert_null(st.error);

        assert_int_equal(observe_parse_info(INFO_NOT_LOADED, strlen(INFO_NOT_LOADED), &st, &why), 0);
        assert_string_equal(st.server_id, C2_ID);
        assert_false(st.loaded);
        assert_null(st.error); /* "does not exist" is a state, not an error */

        /* The limits asked for more memory than the server has: stored, not applied. */
        assert_int_equal(observe_parse_info(INFO_INCOMPLETE, strlen(INFO_INCOMPLETE), &st, &why), 0);
        assert_true(st.loaded);
        assert_false(st.complete);
        assert_int_equal(st.update_time_iat, 1795613912);

        const char *other = HDR "\"data\":null,\"error\":{\"code\":500,"
                            "\"description\":\"something else\"}}";
        assert_int_equal(observe_parse_info(other, strlen(other), &st, &why), 0);
        assert_false(st.loaded);
        assert_non_null(st.error);
        assert_non_null(strstr(st.error, "something else"));
        free(st.error);

        const char *no_iat = HDR "\"data\":{\"complete\":true,"
                             "\"jetstream_enabled\":false,\"decoded_jwt\":{\"iat\":\"soon\"}}}";
        assert_int_equal(observe_parse_info(no_iat, strlen(no_iat), &st, &why), 0);
        assert_int_equal(st.update_time_iat, 0);
        /* Without the counts (not a server we know): none. */
        assert_int_equal(st.connections, 0);

        const char *leafs = HDR "\"data\":{\"complete\":true,\"jetstream_enabled\":false,"
                            "\"client_connections\":3,\"leafnode_connections\":2}}";
        assert_int_equal(observe_parse_info(leafs, strlen(leafs), &st, &why), 0);
        assert_int_equal(st.connections, 3);
        assert_int_equal(st.leafnodes, 2);
}

static void expect_state_error(bool jsz, const char *json, const char *needle) {
        struct server_account_state st;
        char *why = NULL;
        int r = jsz ? observe_parse_jsz(json, strlen(json), &st, &why)
                    : observe_parse_info(json, strlen(json), &st, &why);
        assert_int_equal(r, -EBADMSG);
        assert_non_null(why);
        if (!strstr(why, needle))
                fail_msg("\"%s\" does not mention \"%s\"", why, needle);
        assert_null(st.error);
        free(why);
}

static void test_info_malformed(void **state) {
        expect_state_error(false, "nonsense", "not JSON");
        expect_state_error(false, "{\"data\":{\"complete\":true,\"jetstream_enabled\":true}}", "server.id");
        expect_state_error(false, "{\"server\":{\"id\":\"" C0_ID "\"}}", "neither");
        expect_state_error(false, HDR "\"data\":{\"jetstream_enabled\":true}}",
                           "data.complete");
        expect_state_error(false,
                           HDR "\"data\":{\"complete\":1,\"jetstream_enabled\":true}}",
                           "data.complete");
        expect_state_error(false,
                           HDR "\"data\":{\"complete\":true,\"jetstream_enabled\":\"y\"}}",
                           "data.jetstream_enabled");
        expect_state_error(false,
                           HDR "\"data\":{\"complete\":true,\"jetstream_enabled\":true,\"client_connections\":\"2\"}}",
                           "client_connections");
        expect_state_error(false,
                           HDR "\"data\":{\"complete\":true,\"jetstream_enabled\":true,\"leafnode_connections\":-1}}",
                           "leafnode_connections");
        expect_state_error(false,
                           HDR "\"data\":{\"complete\":true,\"jetstream_enabled\":true,\"client_connections\":4294967296}}",
                           "client_connections");
}

/* $SYS.REQ.ACCOUNT.<key>.CONNZ {"sort":"subs","limit":1} from nats-server 2.9.10: two connections, the busier first. */
static const char CONNZ_TWO[] =
        "{\"server\":{\"name\":\"nats-accountd-sandbox\",\"host\":\"127.0.0.1\",\"id\":\"" C0_ID "\","
        "\"ver\":\"2.9.10\",\"seq\":71,\"jetstream\":true,\"time\":\"2026-11-30T14:58:14.79Z\"},\"data\":{\"server_id\":"
        "\"" C0_ID "\",\"now\":\"2026-11-30T14:58:14.792538283Z\",\"num_connections\":1,\"total\":2,\"offset\":0,"
        "\"limit\":1,\"connections\":[{\"cid\":9,\"kind\":\"Client\",\"type\":\"nats\",\"ip\":\"127.0.0.1\",\"port\":41404,"
        "\"start\":\"2026-11-30T14:58:13.320081765Z\",\"last_activity\":\"2026-11-30T14:58:13.324242649Z\",\"rtt\":"
        "\"3.354253ms\",\"uptime\":\"1s\",\"idle\":\"1s\",\"pending_bytes\":0,\"in_msgs\":0,\"out_msgs\":0,\"in_bytes\":0,"
        "\"out_bytes\":0,\"subscriptions\":3,\"name\":\"NATS CLI Version v0.5.0\",\"lang\":\"go\",\"version\":\"1.53.1\"}]}}";
/* The same where the account has no connection (or is not loaded). */
static const char CONNZ_NONE[] =
        "{\"server\":{\"name\":\"s\",\"id\":\"" C0_ID "\",\"ver\":\"2.15.3\"},\"data\":{\"server_id\":\"" C0_ID "\","
        "\"num_connections\":0,\"total\":0,\"offset\":0,\"limit\":1,\"connections\":[]}}";

/* $SYS.REQ.ACCOUNT.<key>.JSZ {"streams":true,"config":true} from nats-server 2.9.10 (trimmed): an R1 file stream
 * of 215 bytes and an R1 memory stream of 87. */
static const char JSZ_STREAMS[] =
        "{\"server\":{\"name\":\"s\",\"id\":\"" C0_ID "\",\"ver\":\"2.9.10\"},\"data\":{\"name\":\"ORDERS\","
        "\"id\":\"AB2XJXR5NARV6ZKUX4L6KGZ6OI375KO7EOULH4SV6JVP6G64UG4MY7AW\",\"memory\":87,\"storage\":215,"
        "\"reserved_memory\":0,\"reserved_storage\":0,\"accounts\":0,\"ha_assets\":0,\"api\":{\"total\":2,\"errors\":0},"
        "\"stream_detail\":[{\"name\":\"S1\",\"created\":\"2026-11-30T15:05:40.07757993Z\",\"cluster\":{\"leader\":\"s\"},"
        "\"config\":{\"name\":\"S1\",\"subjects\":[\"s1.>\"],\"retention\":\"limits\",\"max_consumers\":-1,"
        "\"storage\":\"file\",\"num_replicas\":1},\"state\":{\"messages\":5,\"bytes\":215,\"consumer_count\":0}},"
        "{\"name\":\"M1\",\"config\":{\"name\":\"M1\",\"storage\":\"memory\",\"num_replicas\":1},"
        "\"state\":{\"messages\":3,\"bytes\":87}},"
        "{\"name\":\"R3\",\"config\":{\"name\":\"R3\",\"storage\":\"file\",\"num_replicas\":3},"
        "\"state\":{\"messages\":3,\"bytes\":1000}},"
        "{\"name\":\"R0\",\"config\":{\"name\":\"R0\",\"storage\":\"file\"},\"state\":{\"bytes\":5}}]}}";

static void test_jsz_streams(void **state) {
        struct server_account_state st;
        struct tier_usage u;
        char *why = NULL;
        assert_int_equal(observe_parse_jsz_streams(JSZ_STREAMS, strlen(JSZ_STREAMS), &st, &u, &why), 0);
        assert_string_equal(st.server_id, C0_ID);
        assert_true(st.have_tier_usage);
        assert_int_equal(u.storage[0], 220); /* num_replicas absent = 1 */
        assert_int_equal(u.memory[0], 87);
        assert_int_equal(u.storage[2], 1000);
        assert_int_equal(u.memory[2], 0);

        /* No JetStream for the account here: nothing stored here. */
        assert_int_equal(observe_parse_jsz_streams(JSZ_NOT_JETSTREAM_ENABLED, strlen(JSZ_NOT_JETSTREAM_ENABLED), &st, &u,
                                                   &why),
                         0);
        assert_true(st.have_tier_usage);
        assert_int_equal(u.storage[0], 0);
        const char *other = HDR "\"error\":{\"code\":503}}";
        assert_int_equal(observe_parse_jsz_streams(other, strlen(other), &st, &u, &why), 0);
        assert_false(st.have_tier_usage);
        free(st.error);

        static const char *const bad[] = {
                HDR "\"data\":{\"stream_detail\":{}}}",
                HDR "\"data\":{\"stream_detail\":[{\"config\":{\"storage\":\"file\"}}]}}",
                HDR "\"data\":{\"stream_detail\":[{\"config\":{\"storage\":\"disk\"},\"state\":{\"bytes\":1}}]}}",
                HDR "\"data\":{\"stream_detail\":[{\"config\":{\"storage\":\"file\",\"num_replicas\":\"3\"},\"state\":{\"bytes\":1}}]}}",
                HDR "\"data\":{\"stream_detail\":[{\"config\":{\"storage\":\"file\"},\"state\":{\"bytes\":-1}}]}}",
                HDR "\"data\":{\"stream_detail\":[{\"state\":{\"bytes\":1}}]}}",
        };
        for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
                why = NULL;
                assert_int_equal(observe_parse_jsz_streams(bad[i], strlen(bad[i]), &st, &u, &why), -EBADMSG);
                if (!why || !strstr(why, "stream_detail"))
                        fail_msg("case %zu: \"%s\"", i, why ? why : "");
                free(why);
        }
}

static void test_connz(void **state) {
        struct server_account_state st;
        char *why = NULL;
        assert_int_equal(observe_parse_connz(CONNZ_TWO, strlen(CONNZ_TWO), &st, &why), 0);
        assert_string_equal(st.server_id, C0_ID);
        assert_true(st.have_subs);
        assert_int_equal(st.max_subs, 3);
        assert_null(st.error);
        assert_int_equal(observe_parse_connz(CONNZ_NONE, strlen(CONNZ_NONE), &st, &why), 0);
        assert_true(st.have_subs);
        assert_int_equal(st.max_subs, 0);

        /* Not sorted as asked: the largest still counts. */
        const char *unsorted = HDR "\"data\":{\"connections\":[{\"subscriptions\":1},{\"subscriptions\":7}]}}";
        assert_int_equal(observe_parse_connz(unsorted, strlen(unsorted), &st, &why), 0);
        assert_int_equal(st.max_subs, 7);

        const char *denied = HDR "\"error\":{\"code\":403,\"description\":\"not allowed\"}}";
        assert_int_equal(observe_parse_connz(denied, strlen(denied), &st, &why), 0);
        assert_false(st.have_subs);
        assert_non_null(strstr(st.error, "not allowed"));
        free(st.error);

        static const char *const bad[][2] = {
                { HDR "\"data\":{\"connections\":{}}}", "data.connections" },
                { HDR "\"data\":{\"connections\":[{\"subscriptions\":-1}]}}", "subscriptions" },
                { HDR "\"data\":{\"connections\":[{\"subscriptions\":\"3\"}]}}", "subscriptions" },
                { HDR "\"data\":{\"connections\":[{}]}}", "subscriptions" },
                { HDR "\"data\":{\"connections\":[{\"subscriptions\":2147483648}]}}", "subscriptions" },
                { "{\"data\":{}}", "server.id" },
        };
        for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
                why = NULL;
                assert_int_equal(observe_parse_connz(bad[i][0], strlen(bad[i][0]), &st, &why), -EBADMSG);
                if (!why || !strstr(why, bad[i][1]))
                        fail_msg("case %zu: \"%s\" does not mention %s", i, why ? why : "", bad[i][1]);
                free(why);
        }
}

static void test_jsz(void **state) {
        struct server_account_state st;
        char *why = NULL;
        /* reserved_* are uint64 18446744073709551615 for unlimited: must not break the parse. */
        assert_int_equal(observe_parse_jsz(JSZ_USAGE, strlen(JSZ_USAGE), &st, &why), 0);
        assert_string_equal(st.server_id, C0_ID);
        assert_true(st.have_usage);
        assert_int_equal(st.memory, 51900);
        assert_int_equal(st.storage, 103300);
        assert_null(st.error);

        const char *const no_usage[] = { JSZ_NOT_FOUND, JSZ_NOT_JETSTREAM_ENABLED, JSZ_SERVER_JETSTREAM_OFF };
        for (size_t i = 0; i < sizeof(no_usage) / sizeof(no_usage[0]); i++) {
                assert_int_equal(observe_parse_jsz(no_usage[i], strlen(no_usage[i]), &st, &why), 0);
                assert_false(st.have_usage);
                assert_null(st.error);
        }

        const char *other = HDR "\"error\":{\"code\":503}}";
        assert_int_equal(observe_parse_jsz(other, strlen(other), &st, &why), 0);
        assert_non_null(st.error);
        assert_non_null(strstr(st.error, "503"));
        free(st.error);

        const char *huge = HDR "\"data\":{\"memory\":18446744073709551615,\"storage\":1}}";
        assert_int_equal(observe_parse_jsz(huge, strlen(huge), &st, &why), 0);
        assert_int_equal(st.memory, INT64_MAX);

        expect_state_error(true, HDR "\"data\":{\"memory\":-1,\"storage\":0}}", "memory");
        expect_state_error(true, HDR "\"data\":{\"memory\":\"1\",\"storage\":0}}",
                           "memory");
        expect_state_error(true, HDR "\"data\":{\"memory\":1.5,\"storage\":0}}",
                           "memory");
        expect_state_error(true, HDR "\"data\":{\"memory\":1}}", "storage");
}

struct pack {
        struct observed_account *v;
        size_t n, cap;
};

static void pack_free(struct pack *p) {
        for (size_t i = 0; i < p->n; i++)
                observed_account_clear(&p->v[i]);
        free(p->v);
        memset(p, 0, sizeof(*p));
}

static void test_pack_msg(void **state) {
        struct pack p = { 0 };
        char *why = NULL;
        assert_int_equal(observe_parse_pack_msg(PACK_MSG_ACC0, strlen(PACK_MSG_ACC0), &p.v, &p.n, &p.cap, &why), 0);
        assert_int_equal(p.n, 1);
        struct observed_account *a = &p.v[0];
        assert_string_equal(a->key, ACC0);
        assert_string_equal(a->name, "ACC0");
        assert_int_equal(a->iat, 1795613814);
        assert_string_equal(a->issuer, OPERATOR_SIGNER);
        assert_string_equal(a->jwt, strchr(PACK_MSG_ACC0, '|') + 1);
        json_t *claims = observed_account_claims(a);
        const json_t *limits = json_object_get(json_object_get(claims, "nats"), "limits");
        assert_int_equal(json_integer_value(json_object_get(limits, "mem_storage")), 1048576);
        assert_int_equal(json_integer_value(json_object_get(limits, "conn")), -1);
        json_decref(claims);
        assert_int_equal(a->js.mode, JS_ENABLED);
        assert_int_equal(a->js.limits.max_memory, 1048576);
        /* The other account limits, as created by nats-accountd: all -1, wildcard exports allowed. */
        for (size_t i = 0; i < ACCT_FIELDS; i++)
                assert_true(a->acct.value[i] == -1);
        assert_true(a->acct.wildcards_allowed);
        assert_int_equal(a->acct.n_imports, 0);
        assert_null(a->servers);

        /* Several lines in one message, blank lines and CRLF tolerated. */
        char *multi = xasprintf("%s\r\n\n%s\n", PACK_MSG_SYS, PACK_MSG_ACC0);
        assert_int_equal(observe_parse_pack_msg(multi, strlen(multi), &p.v, &p.n, &p.cap, &why), 0);
        free(multi);
        assert_int_equal(p.n, 3);
        assert_string_equal(p.v[1].key, SYSTEM_ACCOUNT);
        assert_string_equal(p.v[1].name, "SYS");
        assert_string_equal(p.v[2].key, ACC0);

        /* An empty message (the end of the stream) adds nothing. */
        assert_int_equal(observe_parse_pack_msg("", 0, &p.v, &p.n, &p.cap, &why), 0);
        assert_int_equal(p.n, 3);
        pack_free(&p);
}

/* The daemon's reading of CLAIMS.PACK: a server killed while it wrote an
 * account's JWT lists it with 0 bytes (convergence seed 1201). That entry is
 * set apart, named, and the rest of the message is used; a line that is not
 * "<account key>|..." still fails the message. */
static void test_pack_damaged_entry_is_set_apart(void **state) {
        (void)state;
        struct pack p = { 0 };
        struct observed_damaged *dmg = NULL;
        size_t n_dmg = 0;
        char *why = NULL;
        char *msg = xasprintf("%s|\n%s\n%s|a.b", ACC1, PACK_MSG_ACC0, ACC1);
        assert_int_equal(observe_parse_pack_msg_damaged(msg, strlen(msg), &p.v, &p.n, &p.cap, &dmg, &n_dmg, &why), 0);
        assert_null(why);
        assert_int_equal(p.n, 1);
        assert_string_equal(p.v[0].key, ACC0);
        assert_int_equal(n_dmg, 2);
        assert_string_equal(dmg[0].key, ACC1);
        assert_non_null(strstr(dmg[0].why, "0 bytes"));
        assert_non_null(strstr(dmg[1].why, "header.payload.signature"));
        free(msg);
        /* Not an account key: the message is not a PACK; nothing of it stays. */
        msg = xasprintf("%s\n%s|", PACK_MSG_ACC0, OPERATOR);
        assert_int_equal(observe_parse_pack_msg_damaged(msg, strlen(msg), &p.v, &p.n, &p.cap, &dmg, &n_dmg, &why),
                         -EBADMSG);
        assert_non_null(strstr(why, "not an account public key"));
        assert_int_equal(p.n, 1);
        assert_int_equal(n_dmg, 2);
        free(why);
        free(msg);
        for (size_t i = 0; i < n_dmg; i++)
                free(dmg[i].why);
        free(dmg);
        pack_free(&p);
}

static void expect_pack_error(const char *msg, const char *needle) {
        struct pack p = { 0 };
        char *why = NULL;
        /* A good line first: nothing of a failing message may stay. */
        char *both = xasprintf("%s\n%s", PACK_MSG_ACC0, msg);
        assert_int_equal(observe_parse_pack_msg(both, strlen(both), &p.v, &p.n, &p.cap, &why), -EBADMSG);
        free(both);
        assert_int_equal(p.n, 0);
        assert_non_null(why);
        if (!strstr(why, needle))
                fail_msg("\"%s\" does not mention \"%s\"", why, needle);
        free(why);
        pack_free(&p);
}

static void test_pack_malformed(void **state) {
        const char *jwt = strchr(PACK_MSG_ACC0, '|') + 1;
        char *s;
        expect_pack_error("no separator", "<account key>|<jwt>");
        expect_pack_error("ABC|x.y.z", "<account key>|<jwt>");
        s = xasprintf("%s|%s", OPERATOR, jwt);
        expect_pack_error(s, "not an account public key");
        free(s);
        s = xasprintf("aabrji7zsz5zjevjvn5744qpez32a2yhmckk4wtabxtqtbqo5u3lhbph|%s", jwt);
        expect_pack_error(s, "not an account public key");
        free(s);
        s = xasprintf("%s|", ACC0);
        expect_pack_error(s, "0 bytes");
        free(s);
        expect_pack_error(ACC0 "|onlyone", "header.payload.signature");
        expect_pack_error(ACC0 "|a.b", "header.payload.signature");
        expect_pack_error(ACC0 "|a..c", "header.payload.signature");
        expect_pack_error(ACC0 "|a.b.c.d", "header.payload.signature");
        expect_pack_error(ACC0 "|a.b!c.d", "not base64url");
        expect_pack_error(ACC0 "|a.b!.c", "not base64url");
        expect_pack_error(ACC0 "|a.eyJ=x.c", "not base64url");
        expect_pack_error(ACC0 "|a.Zm9vYmFy.c", "not JSON");
        expect_pack_error(ACC0 "|a.WzFd.c", "not an object"); /* [1] */

        /* Exactly len bytes, no NUL after them (a reply as it may come): the
         * message quotes at most what is there (ASan catches a longer read). */
        char *shortline = xmalloc(5);
        memcpy(shortline, "short", 5);
        struct pack p = { 0 };
        char *why = NULL;
        assert_int_equal(observe_parse_pack_msg(shortline, 5, &p.v, &p.n, &p.cap, &why), -EBADMSG);
        assert_non_null(strstr(why, "\"short...\""));
        free(why);
        free(shortline);
        /* A NUL inside the JWT. */
        char *nul = xasprintf("%s|%s", ACC0, jwt);
        nul[NKEY_PUBLIC_LEN + 10] = 0;
        assert_int_equal(observe_parse_pack_msg(nul, strlen(nul + NKEY_PUBLIC_LEN + 11) + NKEY_PUBLIC_LEN + 11, &p.v,
                                                &p.n, &p.cap, &why),
                         -EBADMSG);
        assert_non_null(strstr(why, "NUL byte"));
        free(why);
        free(nul);
        pack_free(&p);

        const char *const bad[][2] = {
                { JWT_SUB_MISMATCH, "sub is " ACC1 },
                { JWT_USER_TYPE, "nats.type is user" },
                { JWT_NO_IAT, "iat" },
                { JWT_NOT_JSON, "not JSON" },
        };
        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
                s = xasprintf("%s|%s", ACC0, bad[i][0]);
                expect_pack_error(s, bad[i][1]);
                free(s);
        }
}

static void test_account_jwt(void **state) {
        struct observed_account a;
        char *why = NULL;
        assert_int_equal(observe_parse_account_jwt(ACC0, JWT_NO_NAME, strlen(JWT_NO_NAME), &a, &why), 0);
        assert_null(a.name);
        observed_account_clear(&a);
        assert_int_equal(observe_parse_account_jwt(ACC0, JWT_ESCAPED_NAME, strlen(JWT_ESCAPED_NAME), &a, &why), 0);
        assert_string_equal(a.name, "A\xc3\xa9\"B");
        observed_account_clear(&a);

        /* Padding is tolerated, as some encoders add it. */
        const char *jwt = strchr(PACK_MSG_ACC0, '|') + 1;
        const char *dot2 = strrchr(jwt, '.');
        size_t plen = (size_t)(dot2 - strchr(jwt, '.') - 1);
        char *padded = xasprintf("%.*s%s%s", (int)(dot2 - jwt), jwt, plen % 4 == 2 ? "==" : plen % 4 == 3 ? "=" : "",
                                 dot2);
        assert_int_equal(observe_parse_account_jwt(ACC0, padded, strlen(padded), &a, &why), 0);
        assert_string_equal(a.name, "ACC0");
        observed_account_clear(&a);
        free(padded);

        /* Bounded size. */
        size_t big = OBSERVE_JWT_MAX + 1;
        char *huge = xmalloc(big + 1);
        memset(huge, 'A', big);
        huge[big] = 0;
        assert_int_equal(observe_parse_account_jwt(ACC0, huge, big, &a, &why), -EBADMSG);
        free(why);
        free(huge);

        /* why may be NULL. */
        assert_int_equal(observe_parse_account_jwt(ACC0, "x", 1, &a, NULL), -EBADMSG);
}

static void add_account(struct observed *o, const char *key, const char *name, int64_t iat) {
        o->accounts = xreallocarray(o->accounts, o->n_accounts + 1, sizeof(*o->accounts));
        struct observed_account *a = &o->accounts[o->n_accounts++];
        memset(a, 0, sizeof(*a));
        snprintf(a->key, sizeof(a->key), "%s", key);
        a->name = name ? xstrdup(name) : NULL;
        a->iat = iat;
}

static void test_index(void **state) {
        struct observed *o = xcalloc(1, sizeof(*o));
        const char *k1 = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA2";
        const char *k2 = "ABBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB2";
        const char *k3 = "ACCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCC2";
        const char *k4 = "ADDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDD2";
        add_account(o, k3, "APP", 10);
        add_account(o, k1, "APP", 10);
        add_account(o, k2, NULL, 10);
        add_account(o, k4, "DB", 5);
        add_account(o, k4, "DB-NEW", 7); /* the same key twice: the later iat stays */
        add_account(o, k4, "DB-OLD", 6);
        observed_reindex(o);

        assert_int_equal(o->n_accounts, 4);
        assert_string_equal(o->accounts[0].key, k1);
        assert_string_equal(o->accounts[3].key, k4);
        assert_string_equal(o->accounts[3].name, "DB-NEW");

        assert_ptr_equal(observed_find_key(o, k2), &o->accounts[1]);
        assert_null(observed_find_key(o, "AEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEE2"));
        assert_null(observed_find_key(o, "short"));
        assert_null(observed_find_key(o, NULL));

        size_t first = 99;
        assert_int_equal(observed_find_name(o, "APP", &first), 2);
        /* Same name: ordered by key. */
        assert_string_equal(o->accounts[o->by_name[first]].key, k1);
        assert_string_equal(o->accounts[o->by_name[first + 1]].key, k3);
        assert_int_equal(observed_find_name(o, "DB-NEW", &first), 1);
        assert_string_equal(o->accounts[o->by_name[first]].key, k4);
        assert_int_equal(observed_find_name(o, "DB", &first), 0);
        assert_int_equal(observed_find_name(o, "ZZZ", &first), 0);
        assert_int_equal(observed_find_name(o, "", &first), 0);
        assert_int_equal(observed_find_name(o, NULL, &first), 0);
        observed_free(o);
        observed_free(NULL);

        /* Empty. */
        o = xcalloc(1, sizeof(*o));
        observed_reindex(o);
        assert_null(observed_find_key(o, k1));
        assert_int_equal(observed_find_name(o, "APP", &first), 0);
        observed_free(o);
}

/* What a daemon keeps of a sweep: keys, names, verdicts; an edit's working
 * observation from it; what that pass learnt folded back. */
static void test_observed_index(void **state) {
        const char *k1 = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA2";
        const char *k2 = "ABBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB2";
        const char *k3 = "ACCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCC2";
        const char *k4 = "ADDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDD2";
        const char *k5 = "AEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEE2";
        struct observed *o = xcalloc(1, sizeof(*o));
        o->servers = xcalloc(1, sizeof(*o->servers));
        o->n_servers = 1;
        snprintf(o->servers[0].id, sizeof(o->servers[0].id), "%s", "NSERVER");
        o->servers[0].name = xstrdup("s1");
        o->servers[0].trusted_keys = xcalloc(2, sizeof(char *));
        o->servers[0].trusted_keys[0] = xstrdup("OPERATOR");
        add_account(o, k3, "APP", 10);
        add_account(o, k1, "APP", 10);
        o->accounts[1].untrusted = xstrdup("forged");
        add_account(o, k2, NULL, 10);
        add_account(o, k4, "DB", 5);
        o->accounts[3].jwt = xstrdup("a.b.c");
        observed_reindex(o);

        struct observed_index *x = observed_index_new(o);
        observed_free(o);
        assert_int_equal(observed_index_count(x), 4);
        assert_true(observed_index_has_key(x, k2));
        assert_false(observed_index_has_key(x, k5));
        /* The forgery named APP is not counted: APP is k3. */
        assert_string_equal(observed_index_trusted_name(x, "APP"), k3);
        assert_string_equal(observed_index_trusted_name(x, "DB"), k4);
        assert_null(observed_index_trusted_name(x, "NONE"));
        assert_null(observed_index_trusted_name(x, NULL));

        /* An edit of APP: k3 by key, and every account named APP (the forgery too). */
        const char *keys[] = { k3 }, *names[] = { "APP" };
        struct observed *w = observed_index_expand(x, keys, 1, names, 1);
        assert_int_equal(w->n_servers, 1);
        assert_string_equal(w->servers[0].name, "s1");
        assert_string_equal(w->servers[0].trusted_keys[0], "OPERATOR");
        assert_int_equal(w->n_accounts, 2);
        assert_string_equal(w->accounts[0].key, k1);
        assert_string_equal(w->accounts[0].untrusted, "forged");
        assert_string_equal(w->accounts[1].key, k3);
        assert_null(w->accounts[1].untrusted);
        assert_null(w->accounts[1].jwt);
        size_t n_trusted, n_untrusted;
        assert_ptr_equal(observed_find_trusted_name(w, "APP", &n_trusted, &n_untrusted), &w->accounts[1]);
        assert_int_equal(n_untrusted, 1);

        /* What the pass learnt: k3 renamed, the forgery replaced by a genuine
         * JWT, an account created. */
        free(w->accounts[1].name);
        w->accounts[1].name = xstrdup("APP2");
        free(w->accounts[0].untrusted);
        w->accounts[0].untrusted = NULL;
        add_account(w, k5, "NEW", 20);
        w->accounts[2].untrusted = xstrdup("issued in the future");
        observed_reindex(w);
        observed_index_update(x, w);
        observed_free(w);
        assert_int_equal(observed_index_count(x), 5);
        assert_string_equal(observed_index_trusted_name(x, "APP"), k1);
        assert_string_equal(observed_index_trusted_name(x, "APP2"), k3);
        assert_null(observed_index_trusted_name(x, "NEW"));
        const char *names2[] = { "NEW", "DB" };
        w = observed_index_expand(x, NULL, 0, names2, 2);
        assert_int_equal(w->n_accounts, 2);
        assert_string_equal(w->accounts[0].key, k4);
        assert_string_equal(w->accounts[1].key, k5);
        assert_string_equal(w->accounts[1].untrusted, "issued in the future");
        observed_free(w);

        /* Renamed many times: the names block is rebuilt, nothing lost. */
        for (int i = 0; i < 50; i++) {
                const char *k[] = { k2 };
                w = observed_index_expand(x, k, 1, NULL, 0);
                assert_int_equal(w->n_accounts, 1);
                free(w->accounts[0].name);
                w->accounts[0].name = xasprintf("RENAMED-%d", i);
                observed_index_update(x, w);
                observed_free(w);
        }
        assert_string_equal(observed_index_trusted_name(x, "RENAMED-49"), k2);
        assert_null(observed_index_trusted_name(x, "RENAMED-48"));
        assert_string_equal(observed_index_trusted_name(x, "APP"), k1);
        assert_string_equal(observed_index_trusted_name(x, "DB"), k4);
        observed_index_free(x);
        observed_index_free(NULL);
}

static void add_server(struct observed *o, const char *id, const char *name, const char *const *keys) {
        o->servers = xreallocarray(o->servers, o->n_servers + 1, sizeof(*o->servers));
        struct server_info *s = &o->servers[o->n_servers++];
        memset(s, 0, sizeof(*s));
        snprintf(s->id, sizeof(s->id), "%s", id);
        s->name = name ? xstrdup(name) : NULL;
        size_t n = 0;
        while (keys[n])
                n++;
        s->trusted_keys = xcalloc(n + 1, sizeof(char *));
        for (size_t i = 0; i < n; i++)
                s->trusted_keys[i] = xstrdup(keys[i]);
        s->operator_key = n ? xstrdup(keys[0]) : NULL;
}

static void test_key_trusted(void **state) {
        struct observed *o = xcalloc(1, sizeof(*o));
        char *why = NULL;
        assert_false(observed_key_trusted(o, OPERATOR, &why));
        assert_non_null(strstr(why, "no server"));
        free(why);

        const char *const both[] = { OPERATOR, OPERATOR_SIGNER, NULL };
        const char *const op_only[] = { OPERATOR, NULL };
        const char *const none[] = { NULL };
        add_server(o, C0_ID, "c0", both);
        add_server(o, C2_ID, "c2", both);
        assert_true(observed_key_trusted(o, OPERATOR, &why));
        assert_null(why);
        assert_true(observed_key_trusted(o, OPERATOR_SIGNER, NULL));
        assert_false(observed_key_trusted(o, ACC0, NULL));

        /* One server that does not know the signing key is enough to refuse it. */
        server_info_clear(&o->servers[1]);
        o->n_servers--;
        add_server(o, C2_ID, "c2", op_only);
        assert_true(observed_key_trusted(o, OPERATOR, NULL));
        assert_false(observed_key_trusted(o, OPERATOR_SIGNER, &why));
        assert_non_null(why);
        assert_non_null(strstr(why, "c2 (" C2_ID ")"));
        assert_non_null(strstr(why, "does not trust " OPERATOR_SIGNER));
        assert_non_null(strstr(why, "it trusts only " OPERATOR " (operator " OPERATOR));
        free(why);

        add_server(o, C0_ID, NULL, none);
        assert_false(observed_key_trusted(o, OPERATOR, &why));
        assert_non_null(strstr(why, "trusts no operator"));
        free(why);
        assert_false(observed_key_trusted(o, NULL, NULL));
        observed_free(o);
}

/* STATSZ as 2.9.10 sends it (trimmed), and as 2.15.3 does with pooled routes. */
static const char STATSZ_C0[] =
        "{\"server\":{\"name\":\"c0\",\"host\":\"127.0.0.1\",\"id\":\"" C0_ID "\",\"cluster\":\"C\",\"ver\":\"2.9.10\","
        "\"seq\":58,\"jetstream\":true},\"statsz\":{\"start\":\"2026-11-30T15:16:19Z\",\"mem\":1,\"cores\":2,"
        "\"routes\":[{\"rid\":6,\"name\":\"c1\",\"sent\":{\"msgs\":26,\"bytes\":9076},\"received\":{\"msgs\":12,"
        "\"bytes\":5723},\"pending\":92},{\"rid\":7,\"name\":\"c2\"},{\"rid\":8,\"name\":\"c1\"}],"
        "\"gateways\":[{\"gwid\":3,\"name\":\"B\",\"inbound_connections\":2}],\"active_servers\":5}}";

/* Every reply has a size limit for its kind, checked before it is parsed. */
static void test_reply_size_limits(void **state) {
        size_t big = OBSERVE_STATUS_REPLY_MAX + 1;
        char *padded = xmalloc(big);
        memset(padded, ' ', big);
        memcpy(padded, VARZ_CLUSTER, strlen(VARZ_CLUSTER));
        char *why = NULL;
        struct server_info s;
        assert_int_equal(observe_parse_varz(padded, strlen(VARZ_CLUSTER), &s, &why), 0);
        server_info_clear(&s);
        assert_int_equal(observe_parse_varz(padded, big, &s, &why), -EBADMSG);
        assert_non_null(strstr(why, "too large"));
        free(why);
        struct server_peers p;
        assert_int_equal(observe_parse_statsz(padded, big, &p, &why), -EBADMSG);
        free(why);
        struct server_account_state st;
        assert_int_equal(observe_parse_info(padded, big, &st, &why), -EBADMSG);
        free(why);
        assert_int_equal(observe_parse_jsz(padded, big, &st, &why), -EBADMSG);
        free(why);
        free(padded);
}

static void test_statsz(void **state) {
        struct server_peers p;
        char *why = NULL;
        assert_int_equal(observe_parse_statsz(STATSZ_C0, strlen(STATSZ_C0), &p, &why), 0);
        assert_string_equal(p.server_id, C0_ID);
        assert_string_equal(p.name, "c0");
        assert_string_equal(p.cluster, "C");
        assert_int_equal(p.n_routes, 2); /* c1 twice (pooled routes) counts once */
        assert_string_equal(p.routes[0], "c1");
        assert_string_equal(p.routes[1], "c2");
        assert_null(p.routes[2]);
        assert_int_equal(p.n_gateways, 1);
        assert_string_equal(p.gateways[0], "B");
        assert_int_equal(p.active_servers, 5);
        server_peers_clear(&p);

        /* A standalone server: no routes, no gateways (null or absent), no cluster, no name. */
        static const char alone[] = "{\"server\":{\"id\":\"" C2_ID "\"},\"statsz\":{\"routes\":null,\"active_servers\":1}}";
        assert_int_equal(observe_parse_statsz(alone, strlen(alone), &p, &why), 0);
        assert_string_equal(p.name, C2_ID);
        assert_null(p.cluster);
        assert_int_equal(p.n_routes + p.n_gateways, 0);
        server_peers_clear(&p);

        static const char *const bad[][2] = {
                { "{\"statsz\":{}}", "server.id" },
                { HDR "\"data\":{}}", "no \"statsz\" object" },
                { HDR "\"statsz\":{\"routes\":{}}}", "statsz.routes is not an array" },
                { HDR "\"statsz\":{\"routes\":[{\"rid\":1}]}}", "statsz.routes[0] has no usable name" },
                { HDR "\"statsz\":{\"gateways\":[{\"name\":\"\"}]}}", "statsz.gateways[0] has no usable name" },
                { HDR "\"statsz\":{\"active_servers\":-1}}", "active_servers" },
        };
        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
                assert_int_equal(observe_parse_statsz(bad[i][0], strlen(bad[i][0]), &p, &why), -EBADMSG);
                if (!strstr(why, bad[i][1]))
                        fail_msg("%s: \"%s\" does not mention \"%s\"", bad[i][0], why, bad[i][1]);
                free(why);
                why = NULL;
        }
}

/* Every JWT read is verified: its signature when parsed, its issuer and iat
 * against what the servers trust and the clock. */
static void test_account_jwt_verified(void **state) {
        struct observed_account a;
        char *why = NULL;
        const char *jwt = strchr(PACK_MSG_ACC0, '|') + 1;
        assert_int_equal(observe_parse_account_jwt(ACC0, jwt, strlen(jwt), &a, &why), 0);
        assert_null(a.untrusted);

        struct observed *o = xcalloc(1, sizeof(*o));
        const char *const both[] = { OPERATOR, OPERATOR_SIGNER, NULL };
        const char *const op_only[] = { OPERATOR, NULL };
        add_server(o, C0_ID, "c0", both);
        observed_account_vet(o, &a, a.iat);
        assert_null(a.untrusted);
        /* A small skew is fine, more is a JWT from the future. */
        observed_account_vet(o, &a, a.iat - OBSERVE_FUTURE_SKEW_SEC);
        assert_null(a.untrusted);
        observed_account_vet(o, &a, a.iat - OBSERVE_FUTURE_SKEW_SEC - 1);
        assert_non_null(a.untrusted);
        assert_non_null(strstr(a.untrusted, "issued 301 s in the future"));
        free(a.untrusted);
        a.untrusted = NULL;
        /* A server that does not list its issuer. */
        add_server(o, C2_ID, "c2", op_only);
        observed_account_vet(o, &a, a.iat);
        assert_non_null(a.untrusted);
        assert_non_null(strstr(a.untrusted, "signed by " OPERATOR_SIGNER ", which is neither the operator"));
        observed_account_clear(&a);
        observed_free(o);

        /* Altered after signing: one character of the signature. */
        char *altered = xstrdup(jwt);
        char *c = strrchr(altered, '.') + 20;
        *c = *c == 'A' ? 'B' : 'A';
        assert_int_equal(observe_parse_account_jwt(ACC0, altered, strlen(altered), &a, &why), 0);
        assert_non_null(a.untrusted);
        assert_non_null(strstr(a.untrusted, "not genuine: JWT signature does not match its issuer"));
        observed_account_clear(&a);
        /* ... or of the claims (the name ACC0 -> ACC1, still valid base64url). */
        char *p = strstr(altered, "QUNDMC"); /* "ACC0\"" */
        assert_non_null(p);
        p[5] = 'S'; /* "ACC1\"" */
        *c = *c == 'A' ? 'B' : 'A'; /* the signature back as it was */
        assert_int_equal(observe_parse_account_jwt(ACC0, altered, strlen(altered), &a, &why), 0);
        assert_string_equal(a.name, "ACC1");
        assert_non_null(a.untrusted);
        observed_account_clear(&a);
        free(altered);

        /* Fixtures with a made-up signature parse, and are never trusted. */
        assert_int_equal(observe_parse_account_jwt(ACC0, JWT_NO_NAME, strlen(JWT_NO_NAME), &a, &why), 0);
        assert_non_null(strstr(a.untrusted, "not genuine"));
        observed_account_clear(&a);
}

/* CLAIMS.UPDATE replies as 2.9.10 sends them (NATS-FACTS.md), and forgeries. */
static const char UPDATE_OK[] =
        "{\"data\":{\"account\":\"" ACC0 "\",\"code\":200,\"message\":\"jwt updated\"},\"server\":{\"name\":\"c0\","
        "\"host\":\"127.0.0.1\",\"id\":\"" C0_ID "\",\"cluster\":\"C\",\"ver\":\"2.9.10\",\"seq\":94,\"jetstream\":true,"
        "\"time\":\"2026-11-25T13:37:08.9Z\"}}";
static const char UPDATE_REFUSED[] =
        "{\"error\":{\"account\":\"n/a\",\"code\":500,\"description\":\"jwt update resulted in error - expected 3 "
        "chunks\"},\"server\":{\"name\":\"c2\",\"host\":\"127.0.0.1\",\"id\":\"" C2_ID "\",\"ver\":\"2.9.10\"}}";

/* A PACK's first message comes once the server read its whole store: the
 * wait grows with the JWTs expected, from max(request_timeout, 10 s). */
static void test_pack_wait(void **state) {
        const uint64_t s = 1000000;
        assert_int_equal(observe_pack_wait_usec(2 * s, 0), 10 * s);
        assert_int_equal(observe_pack_wait_usec(2 * s, 3), 10 * s + 1500);
        assert_int_equal(observe_pack_wait_usec(30 * s, 0), 30 * s);
        assert_int_equal(observe_pack_wait_usec(2 * s, 100000), 60 * s);
        assert_int_equal(observe_pack_wait_usec(30 * s, 100000), 80 * s);
        /* Never past the 10 minutes a whole PACK may take. */
        assert_int_equal(observe_pack_wait_usec(2 * s, 10000000), 600 * s);
        assert_int_equal(observe_pack_wait_usec(2 * s, SIZE_MAX), 600 * s);
        assert_int_equal(observe_pack_wait_usec(UINT64_MAX, 5), 600 * s);
}

static void test_update_reply(void **state) {
        struct update_reply r;
        char *why = NULL;
        assert_int_equal(observe_parse_update_reply(UPDATE_OK, strlen(UPDATE_OK), &r, &why), 0);
        assert_true(r.ok);
        assert_string_equal(r.server_id, C0_ID);
        assert_string_equal(r.server_name, "c0");
        assert_string_equal(r.account, ACC0);
        assert_null(r.error);
        update_reply_clear(&r);

        assert_int_equal(observe_parse_update_reply(UPDATE_REFUSED, strlen(UPDATE_REFUSED), &r, &why), 0);
        assert_false(r.ok);
        assert_string_equal(r.server_id, C2_ID);
        assert_string_equal(r.account, ""); /* "n/a" */
        assert_string_equal(r.error, "jwt update resulted in error - expected 3 chunks (code 500)");
        update_reply_clear(&r);

        static const char *const bad[][2] = {
                { "{\"data\":{\"account\":\"" ACC0 "\",\"code\":200}}", "server.id" },
                { HDR "\"data\":{\"account\":\"" ACC0 "\",\"code\":201}}", "not 200" },
                { HDR "\"data\":{\"code\":200}}", "not 200 and the account" },
                { HDR "\"data\":{\"account\":\"ABC\",\"code\":200}}", "not an account public key" },
                { HDR "\"data\":{\"account\":\"" ACC0 "\",\"code\":200},\"error\":{}}", "exactly one" },
                { HDR "\"message\":\"jwt updated\"}", "exactly one" },
                { "{\"server\":{\"id\":\"" ACC0 "\"},\"data\":{\"account\":\"" ACC0 "\",\"code\":200}}",
                  "not a server public key" },
                { "[1]", "not a JSON object" },
        };
        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
                assert_int_equal(observe_parse_update_reply(bad[i][0], strlen(bad[i][0]), &r, &why), -EBADMSG);
                if (!strstr(why, bad[i][1]))
                        fail_msg("%s: \"%s\" does not mention \"%s\"", bad[i][0], why, bad[i][1]);
                free(why);
                why = NULL;
        }
        /* Bounded: a status object is small. */
        size_t big = OBSERVE_UPDATE_REPLY_MAX + 1;
        char *padded = xmalloc(big + 1);
        memset(padded, ' ', big);
        memcpy(padded, UPDATE_OK, strlen(UPDATE_OK));
        padded[big] = 0;
        assert_int_equal(observe_parse_update_reply(padded, big, &r, &why), -EBADMSG);
        assert_non_null(strstr(why, "too large"));
        free(why);
        free(padded);
}

static struct observed_account merge_entry(char letter, const char *name, int64_t iat) {
        struct observed_account a = { .iat = iat, .holders = 1 };
        memset(a.key, letter, NKEY_PUBLIC_LEN);
        a.key[0] = 'A';
        a.key[NKEY_PUBLIC_LEN] = 0;
        a.name = strdup(name);
        a.jwt = strdup("jwt");
        return a;
}

/* Found by the soak (seed 74504015, ASan: heap-buffer-overflow in
 * observe_lookup): accounts looked up after a failed pass were merged into
 * the observation while it grew, found by a binary search over the grown,
 * no longer sorted array; an account that was there was missed and appended
 * past the room made for the new ones. */
static void test_merge_lookups_into_a_growing_observation(void **state) {
        (void)state;
        struct observed *o = calloc(1, sizeof(*o));
        o->accounts = calloc(1, sizeof(*o->accounts));
        o->accounts[0] = merge_entry('Z', "OLD", 1);
        o->accounts[0].servers = calloc(1, sizeof(*o->accounts[0].servers));
        o->accounts[0].n_servers = 1;
        o->n_accounts = 1;
        observed_reindex(o);
        /* C's and Q's CLAIMS.PACK entries were damaged; C comes whole from a lookup. */
        o->damaged = calloc(2, sizeof(*o->damaged));
        o->n_damaged = 2;
        for (size_t i = 0; i < 2; i++) {
                memset(o->damaged[i].key, "CQ"[i], NKEY_PUBLIC_LEN);
                o->damaged[i].key[0] = 'A';
                o->damaged[i].why = strdup("0 bytes");
        }
        /* Three new keys, all below Z, then Z itself: with Z searched for in
         * [Z, B, C, D], the search goes right of C and misses it. */
        struct observed_account best[5] = { merge_entry('B', "B", 2), merge_entry('C', "C", 2),
                                            merge_entry('D', "D", 2), merge_entry('Z', "NEW", 2) };
        observed_merge(o, best, 5);
        assert_int_equal(o->n_accounts, 4);
        for (size_t i = 0; i < 5; i++)
                assert_null(best[i].name); /* each taken */
        struct observed_account *z = observed_find_key(o, o->accounts[3].key);
        assert_non_null(z);
        assert_true(z->key[1] == 'Z');
        assert_string_equal(z->name, "NEW");
        assert_int_equal(z->iat, 2);
        /* Updated in place: the servers' state of the account stayed. */
        assert_int_equal(z->n_servers, 1);
        for (size_t i = 0; i < 3; i++)
                assert_true(o->accounts[i].key[1] == "BCD"[i]);
        size_t first = 0;
        assert_int_equal(observed_find_name(o, "NEW", &first), 1);
        assert_int_equal(observed_find_name(o, "OLD", &first), 0);
        /* C's name can be read now: only Q is still damaged. */
        assert_int_equal(o->n_damaged, 1);
        assert_true(o->damaged[0].key[1] == 'Q');
        observed_free(o);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_varz_cluster),
                cmocka_unit_test(test_varz_no_jetstream),
                cmocka_unit_test(test_varz_malformed),
                cmocka_unit_test(test_varz_scoped_signing_key),
                cmocka_unit_test(test_accountz),
                cmocka_unit_test(test_info),
                cmocka_unit_test(test_info_malformed),
                cmocka_unit_test(test_jsz),
                cmocka_unit_test(test_connz),
                cmocka_unit_test(test_jsz_streams),
                cmocka_unit_test(test_pack_msg),
                cmocka_unit_test(test_pack_malformed),
                cmocka_unit_test(test_pack_damaged_entry_is_set_apart),
                cmocka_unit_test(test_account_jwt),
                cmocka_unit_test(test_index),
                cmocka_unit_test(test_key_trusted),
                cmocka_unit_test(test_update_reply),
                cmocka_unit_test(test_pack_wait),
                cmocka_unit_test(test_observed_index),
                cmocka_unit_test(test_account_jwt_verified),
                cmocka_unit_test(test_statsz),
                cmocka_unit_test(test_reply_size_limits),
                cmocka_unit_test(test_merge_lookups_into_a_growing_observation),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
