//! Every abcdesktop route, end to end over loopback: token source, upstream (pod port or named
//! service), upstream URI and query, and the header profile.

use crate::support_proxy;

use http::StatusCode;
use support_proxy::*;

struct World {
    gw: Gateway,
    desktop: Desktop,
    pyos: Upstream,
    speedtest: Upstream,
    console: Upstream,
    website: Upstream,
}

async fn world() -> World {
    let desktop = Desktop::http().await;
    let pyos = upstream("pyos").await;
    let speedtest = upstream("speedtest").await;
    let console = upstream("console").await;
    let website = upstream("website").await;
    let mut file = file_config(desktop.port_map());
    file.services = services(&pyos, &speedtest, &console, &website);
    let gw = spawn_gateway(file).await;
    World {
        gw,
        desktop,
        pyos,
        speedtest,
        console,
        website,
    }
}

#[derive(Clone, Copy, Debug)]
enum Tok {
    Header,
    JwtQuery,
    RawQuery,
    Path,
}

/// (path before the token, how the token travels, upstream name, upstream URI with `{t}` for
/// the token, header profile)
fn desktop_cases() -> Vec<(&'static str, Tok, &'static str, &'static str, &'static str)> {
    vec![
        ("/websockify", Tok::JwtQuery, "6081", "/", "ws"),
        ("/websockify", Tok::RawQuery, "6081", "/", "ws"),
        ("/signalling", Tok::JwtQuery, "29787", "/", "ws"),
        (
            "/container/{t}/29786/spawner/getproclist?a=1",
            Tok::Path,
            "29786",
            "/spawner/getproclist?a=1",
            "proxy",
        ),
        ("/container/{t}/29783", Tok::Path, "29783", "/", "proxy"),
        (
            "/container/29781",
            Tok::Header,
            "29781",
            "/container/29781",
            "proxy",
        ),
        (
            "/spawner/getproclist?x=1",
            Tok::Header,
            "29786",
            "/spawner/getproclist?x=1",
            "proxy",
        ),
        (
            "/terminals/42",
            Tok::RawQuery,
            "29781",
            "/terminals/42?{t}",
            "ws",
        ),
        (
            "/terminals/42/size?cols=80",
            Tok::Header,
            "29781",
            "/terminals/42/size?cols=80",
            "plain",
        ),
        (
            "/terminals?cols=80",
            Tok::Header,
            "29781",
            "/terminals?cols=80",
            "plain",
        ),
        (
            "/filer?file=a.txt",
            Tok::Header,
            "29783",
            "/filer?file=a.txt",
            "plain",
        ),
        (
            "/printerfiler/x",
            Tok::Header,
            "29782",
            "/printerfiler/x",
            "plain",
        ),
        (
            "/u8_1_11025",
            Tok::Header,
            "4714",
            "/listen/source/u8_1_11025.monitor",
            "plain",
        ),
        (
            "/alaw8_1_8000?x=1",
            Tok::Header,
            "4714",
            "/listen/source/alaw8_1_8000.monitor",
            "plain",
        ),
        (
            "/broadcast",
            Tok::JwtQuery,
            "29784",
            "/broadcast?jwt_token={t}",
            "ws",
        ),
        ("/sound", Tok::JwtQuery, "29788", "/", "ws"),
        ("/microphone", Tok::RawQuery, "29789", "/", "ws"),
        ("/gamepad", Tok::JwtQuery, "29790", "/", "ws"),
        (
            "/snapshot/take",
            Tok::Header,
            "29785",
            "/snapshot/take",
            "plain",
        ),
    ]
}

fn place(path: &str, how: Tok, token: &str) -> (String, Option<String>) {
    let path = path.replace("{t}", token);
    match how {
        Tok::Header => (path, Some(token.to_owned())),
        Tok::JwtQuery => (format!("{path}?jwt_token={token}"), None),
        Tok::RawQuery => (format!("{path}?{token}"), None),
        Tok::Path => (path, None),
    }
}

#[tokio::test]
async fn every_desktop_route_reaches_its_pod_port_with_its_uri_and_headers() {
    let w = world().await;
    let token = token();
    for (path, how, up, uri, profile) in desktop_cases() {
        let (url_path, header) = place(path, how, &token);
        let (status, headers, body) = get(&w.gw.url(&url_path), header.as_deref()).await;
        assert_eq!(status, StatusCode::OK, "{path} {how:?}: {body}");
        assert!(
            headers.get("server").is_none(),
            "{path}: Server header leaked"
        );
        let seen = seen(&body);
        assert_eq!(seen["name"], up, "{path} {how:?}");
        assert_eq!(seen["uri"], uri.replace("{t}", &token), "{path} {how:?}");
        let h = &seen["headers"];
        let pod = format!("127.0.0.1:{up}");
        match profile {
            "proxy" => {
                assert_eq!(h["host"], "127.0.0.1", "{path}: proxy.conf Host is $host");
                assert_eq!(h["x-real-ip"], "127.0.0.1", "{path}");
                assert_eq!(h["x-forwarded-for"], "127.0.0.1", "{path}");
                assert_eq!(h["x-forwarded-proto"], "http", "{path}");
            }
            "ws" => {
                assert_eq!(h["host"], pod, "{path}: ws.conf Host is $proxy_host");
                assert_eq!(h["x-real-ip"], "127.0.0.1", "{path}");
                assert_eq!(h["x-forwarded-for"], "127.0.0.1", "{path}");
            }
            _ => {
                assert_eq!(h["host"], pod, "{path}: plain Host is $proxy_host");
                assert!(h.get("x-forwarded-for").is_none(), "{path}");
            }
        }
        assert_eq!(h["origin"], "http://portal.example", "{path}: Origin kept");
        if let Some(t) = header {
            // Like nginx, the token header reaches the pod services.
            assert_eq!(h["abcauthorization"], format!("Bearer {t}"), "{path}");
        }
    }
}

#[tokio::test]
async fn desktop_routes_refuse_missing_and_bad_tokens_without_dialling() {
    let w = world().await;
    for (path, how, _, _, _) in desktop_cases() {
        for bad in ["", "not.a.token", "eyJhbGciOiJub25lIn0.e30.x"] {
            let (url_path, header) = place(path, how, bad);
            // An empty path token does not match the container rules at all.
            if matches!(how, Tok::Path) && bad.is_empty() {
                continue;
            }
            let (status, headers, body) = get(&w.gw.url(&url_path), header.as_deref()).await;
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{path} {how:?} {bad:?}");
            assert_eq!(body, "401 Unauthorized\n");
            assert!(headers.get("www-authenticate").is_some());
        }
    }
    assert_eq!(
        w.desktop.accepted(),
        0,
        "a refused token opened an upstream connection"
    );
}

#[tokio::test]
async fn named_service_routes_need_no_token_and_rewrite_as_the_original() {
    let w = world().await;
    let cases = [
        (
            "/API/manager/images?x=1",
            "pyos",
            "/API/manager/images?x=1",
            true,
        ),
        ("/status.html", "pyos", "/status.html", true),
        ("/autologin", "pyos", "/autologin", true),
        ("/img/app/firefox.svg", "pyos", "/img/app/firefox.svg", true),
        (
            "/speedtest/garbage.php?ckSize=1",
            "speedtest",
            "/garbage.php?ckSize=1",
            false,
        ),
        ("/speedtest", "speedtest", "/", false),
        ("/console", "console", "/", true),
        ("/console/x/y?z", "console", "/x/y?z", true),
        ("/", "website", "/", true),
        ("/js/app.js?v=3", "website", "/js/app.js?v=3", true),
    ];
    for (path, up, uri, proxy_profile) in cases {
        let (status, _, body) = get(&w.gw.url(path), None).await;
        assert_eq!(status, StatusCode::OK, "{path}: {body}");
        let seen = seen(&body);
        assert_eq!(seen["name"], up, "{path}");
        assert_eq!(seen["uri"], uri, "{path}");
        if proxy_profile {
            assert_eq!(seen["headers"]["host"], "127.0.0.1", "{path}");
            assert_eq!(seen["headers"]["x-forwarded-for"], "127.0.0.1", "{path}");
        }
    }
    assert!(w.pyos.accepted() > 0 && w.speedtest.accepted() > 0);
    assert!(w.console.accepted() > 0 && w.website.accepted() > 0);
}

#[tokio::test]
async fn healthz_and_node_are_answered_by_the_gateway() {
    let w = world().await;
    let (status, headers, body) = get(&w.gw.url("/healthz"), None).await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "OK\n"));
    assert!(headers.get("server").is_none());
    let (status, _, body) = get(&w.gw.url("/node"), None).await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "test-node\n"));
}

#[tokio::test]
async fn x_forwarded_for_is_appended_to() {
    let w = world().await;
    let req = http::Request::get(w.gw.url("/API/x"))
        .header("x-forwarded-for", "203.0.113.7")
        .header("connection", "keep-alive, x-drop-me")
        .header("x-drop-me", "1")
        .body(full(""))
        .unwrap();
    let (_, _, body) = send(req).await;
    let h = &seen(&body)["headers"];
    assert_eq!(h["x-forwarded-for"], "203.0.113.7, 127.0.0.1");
    assert!(
        h.get("x-drop-me").is_none(),
        "Connection-listed header forwarded"
    );
}

#[tokio::test]
async fn container_ports_outside_the_allow_list_are_404_before_any_token_work() {
    let w = world().await;
    let token = token();
    for path in [
        format!("/container/{token}/22/x"),
        format!("/container/{token}/8000"),
        "/container/99999".to_owned(),
    ] {
        let (status, _, _) = get(&w.gw.url(&path), Some(&token)).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}");
    }
    assert_eq!(w.desktop.accepted(), 0);
}
