//! Binary assets: upload, analysis and ranged reads.

use crate::common;

use base64::Engine;
use common::TestServer;
use serde_json::json;

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

use super::*;

#[tokio::test(flavor = "multi_thread")]
async fn a_png_round_trip_with_ranges() {
    let server = TestServer::start().await;
    let mut raos = Raos::connect(&server).await;
    let token = raos.sign_in(&server, "artist").await;
    let image = png(320, 200);
    let uploaded = raos
        .ok(
            "upload_binary_asset",
            json!({"auth_token": token, "asset_type": "image", "filename": "nebula.png",
                   "file_data": B64.encode(&image), "compressed": false, "format": "png"}),
        )
        .await;
    let asset_id = uploaded["asset_id"].as_str().unwrap().to_owned();
    let url = uploaded["asset_url"].as_str().unwrap().to_owned();
    assert_eq!(
        url,
        format!("http://{}/assets/{asset_id}", server.handle().http_addr)
    );
    let analysis = raos
        .ok(
            "analyze_asset",
            json!({"auth_token": token, "asset_id": asset_id}),
        )
        .await;
    let a = &analysis["analysis"];
    assert_eq!(a["format"], "PNG");
    assert_eq!(a["dimensions"], "320x200");
    assert_eq!(a["color_space"], "RGBA");
    assert_eq!(a["size"], image.len());
    let score = a["quality_score"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&score), "{score}");

    let response = server.http.get(&url).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "image/png");
    let etag = response.headers()["etag"].to_str().unwrap().to_owned();
    assert_eq!(etag, format!("\"{}\"", sha256_hex(&image)));
    assert_eq!(response.bytes().await.unwrap().as_ref(), image.as_slice());

    let response = server
        .http
        .get(&url)
        .header("Range", "bytes=100-199")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 206);
    assert_eq!(
        response.headers()["content-range"],
        format!("bytes 100-199/{}", image.len()).as_str()
    );
    assert_eq!(response.bytes().await.unwrap().as_ref(), &image[100..200]);
    let response = server
        .http
        .get(&url)
        .header("Range", format!("bytes={}-", image.len() + 10))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 416);
    let response = server
        .http
        .get(&url)
        .header("If-None-Match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 304);
    let missing = server
        .http
        .get(server.url("/assets/nope"))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
}
