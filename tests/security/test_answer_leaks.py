"""Attacks that read answers off the annotator API instead of the images: equal URLs for equal images
(content-hash names), hashes in headers, other assignments' images, and platform ids in the address.
Each test performs the attack and asserts it now fails."""

import logging
from pathlib import PurePosixPath

import pytest
from rest_framework.test import APIClient

from judgments.models import Assignment, Trial
from studies.models import Item

pytestmark = pytest.mark.django_db


def start(client, study, **body):
    payload = {"platform": "anonymous", "consent": True, **body}
    return client.post(f"/api/v1/studies/{study.pk}/assignments/", payload, format="json")


def with_identical_pairs(study):
    """Sentinels as a real study builds them: JND "same" pairs show one file twice; a 2AFC sentinel's
    right side is the reference itself."""
    for item in Item.objects.filter(study=study, role__in=("sentinel", "practice")):
        if item.expected == "same":
            item.p1_image = item.p0_image
        elif item.expected in ("p0", "p1"):
            setattr(item, f"{item.expected}_image", item.ref_image)
        item.save()
    return study


def sentinel_score(client, body, policy):
    """Answer every trial with `policy(images)` and return the sentinel accuracy QC computes."""
    for trial in body["trials"]:
        r = client.post(
            f"/api/v1/assignments/{body['token']}/judgments/",
            {
                "trial": trial["id"],
                "response": policy(trial["images"]),
                "rt_ms": 900,
                "idempotency_key": f"key-{trial['id']}",
            },
            format="json",
        )
        assert r.status_code == 201
    done = client.post(f"/api/v1/assignments/{body['token']}/submit/")
    return done.status_code, Assignment.objects.get(token=body["token"]).qc


def test_the_url_equality_bot_no_longer_scores_on_jnd(make_study):
    """The bot: answer "same" exactly when the two image URLs are equal. With content-hash URLs it scored
    10/10 on sentinels and found the identical test pairs too."""
    study = with_identical_pairs(
        make_study(
            kind="jnd", n_test=10, n_sentinels=10, n_practice=0, config={"sentinel_rate": 0.5, "hit_size": 10}
        )
    )
    client = APIClient()
    body = start(client, study).json()
    urls = [url for t in body["trials"] for url in t["images"].values()]
    assert len(urls) == len(set(urls))  # no two images of the whole assignment share a URL
    bot = lambda images: "same" if images["first"] == images["second"] else "different"  # noqa: E731
    status, qc = sentinel_score(client, body, bot)
    assert status == 200 and qc["sentinels"] >= 4
    n_same = Trial.objects.filter(
        assignment__token=body["token"], kind="sentinel", item__expected="same"
    ).count()
    assert (
        n_same > 0 and qc["sentinels_correct"] == qc["sentinels"] - n_same
    )  # no better than always "different"
    assert qc["excluded"]


def test_the_url_equality_bot_no_longer_scores_on_2afc(make_study):
    """The bot: pick the side whose URL equals the reference's (a sentinel's right answer is the ref)."""
    study = with_identical_pairs(
        make_study(
            kind="2afc",
            n_test=10,
            n_sentinels=10,
            n_practice=2,
            config={"sentinel_rate": 0.5, "hit_size": 10},
        )
    )
    client = APIClient()
    body = start(client, study).json()
    urls = [url for t in body["trials"] for url in t["images"].values()]
    assert len(urls) == len(set(urls))
    assert not any(t["images"]["ref"] in (t["images"]["left"], t["images"]["right"]) for t in body["trials"])


def test_image_responses_reveal_no_content_hash(make_study):
    """The attack: read the file's identity from the response (ETag, Last-Modified, a file name) instead
    of the URL."""
    study = with_identical_pairs(make_study(kind="jnd", n_test=4, n_sentinels=4, n_practice=0))
    client = APIClient()
    body = start(client, study).json()
    hashes = {
        PurePosixPath(name).stem
        for item in Item.objects.filter(study=study)
        for name in (item.ref_image, item.p0_image, item.p1_image)
    }
    seen = {}
    for trial in body["trials"]:
        t = Trial.objects.select_related("item").get(public_id=trial["id"])
        for slot, url in trial["images"].items():
            assert not any(h in url for h in hashes)
            r = client.get(url)
            assert r.status_code == 200 and r["Content-Type"] == "image/png"
            data = b"".join(r.streaming_content)
            for header in ("ETag", "Last-Modified", "Content-Disposition"):
                assert header not in r, header
            assert "private" in r["Cache-Control"] and "public" not in r["Cache-Control"]
            assert not any(h in value for h in hashes for value in r.headers.values())
            # the right file for the slot (JND: p0 first, unless swapped)
            name = (t.item.p0_image, t.item.p1_image)[(slot == "second") != t.swap]
            assert data == (study_media(name)).read_bytes()
            seen[url] = data
    assert len(seen) == 2 * len(body["trials"])


def study_media(name):
    from django.conf import settings

    return settings.MEDIA_ROOT / name


def test_image_urls_open_only_with_their_own_token(make_study):
    """The attack: fetch another assignment's images (or guess slots) with one's own token."""
    study = make_study(kind="2afc", n_test=8, n_sentinels=0, n_practice=0, config={"hit_size": 4})
    client = APIClient()
    mine, theirs = start(client, study).json(), start(client, study).json()
    other_trial = theirs["trials"][0]["id"]
    assert client.get(f"/api/v1/assignments/{mine['token']}/trials/{other_trial}/left/").status_code == 404
    own = mine["trials"][0]["id"]
    for slot in ("first", "p0", "..", "ref.png"):
        assert client.get(f"/api/v1/assignments/{mine['token']}/trials/{own}/{slot}/").status_code == 404, (
            slot
        )
    client.post(f"/api/v1/assignments/{mine['token']}/return/")
    assert client.get(mine["trials"][0]["images"]["left"]).status_code == 404  # a returned HIT shows nothing


def test_a_reverse_proxy_can_send_the_file(make_study, settings):
    settings.PERCEPTLAB_CROWD = {
        **settings.PERCEPTLAB_CROWD,
        "IMAGE_ACCEL_HEADER": "X-Accel-Redirect",
        "IMAGE_ACCEL_PREFIX": "/internal-media/",
    }
    study = make_study(kind="2afc", n_test=2, n_sentinels=0, n_practice=0)
    client = APIClient()
    body = start(client, study).json()
    trial = body["trials"][0]
    r = client.get(trial["images"]["ref"])
    item = Trial.objects.select_related("item").get(public_id=trial["id"]).item
    assert (
        r.status_code == 200
        and r["X-Accel-Redirect"] == "/internal-media/" + item.ref_image
        and r.content == b""
    )
    assert "ETag" not in r and "private" in r["Cache-Control"]


def test_mturk_preview_examples_are_opaque_too(make_study):
    study = with_identical_pairs(make_study(kind="2afc", n_test=2, n_sentinels=0, n_practice=3))
    client = APIClient()
    r = start(
        client,
        study,
        platform="mturk",
        worker_id="",
        assignment_id="ASSIGNMENT_ID_NOT_AVAILABLE",
        hit_id="H",
        turk_submit_to="https://www.mturk.com",
    )
    examples = r.json()["examples"]
    urls = [url for ex in examples for url in ex.values()]
    assert len(examples) == 2 and len(urls) == len(set(urls)) == 6
    for url in urls:
        assert ".png" not in url
        got = client.get(url)
        assert got.status_code == 200 and "ETag" not in got
    assert client.get(f"/api/v1/studies/{study.pk}/examples/2/left/").status_code == 404
    assert client.get(f"/api/v1/studies/{study.pk}/examples/0/first/").status_code == 404


def test_the_annotator_page_never_logs_or_forwards_the_platform_ids(make_study, client, caplog):
    """PROLIFIC_PID / workerId ride in the page address: our own code must not write them to a log, and
    the page sends no Referer carrying them."""
    import uuid

    study = make_study(n_test=2, n_sentinels=0, n_practice=0)
    caplog.set_level(logging.DEBUG)
    r = client.get(f"/s/{study.pk}/?PROLIFIC_PID=PIDSECRET77&STUDY_ID=S&SESSION_ID=SE")
    assert r.status_code == 200 and r["Referrer-Policy"] == "no-referrer"
    missing = client.get(f"/s/{uuid.uuid4()}/?PROLIFIC_PID=PIDSECRET77&workerId=WSECRET77")
    assert missing.status_code == 404
    logged = "\n".join(rec.getMessage() for rec in caplog.records)
    assert "PIDSECRET77" not in logged and "WSECRET77" not in logged


@pytest.mark.django_db(transaction=True)
def test_the_simulated_crowd_judges_images_fetched_through_the_api(live_server, make_study):
    """crowdsim.simulation's workers see the pixels only through the opaque image URLs, and still
    answer sentinels as their observer would (the pixels are the same)."""
    from crowdsim.simulation import run_crowd

    study = make_study(
        kind="2afc",
        n_test=8,
        n_sentinels=4,
        n_practice=0,
        config={
            "simulation": True,
            "hit_size": 4,
            "judgments_per_item": {"train": 1, "val": 1},
            "training": {"every": None},
        },
    )
    result = run_crowd(
        base_url=live_server.url,
        study_id=str(study.pk),
        n_workers=2,
        spammers=0.0,
        concurrency=1,
        replay_rate=0.0,
    )
    assert result.assignments >= 2 and result.judgments >= 8
    assert Assignment.objects.filter(study=study, status="submitted").count() == result.assignments


def test_an_image_costs_one_indexed_query(make_study, django_assert_num_queries):
    study = make_study(kind="2afc", n_test=4, n_sentinels=0, n_practice=0)
    client = APIClient()
    body = start(client, study).json()
    url = body["trials"][1]["images"]["right"]
    with django_assert_num_queries(1):
        r = client.get(url)
    assert r.status_code == 200


@pytest.mark.parametrize(
    "path", ["../secret_key", "/etc/hostname", "stimuli/page.html", "stimuli/../db.sqlite3"]
)
def test_an_item_path_outside_the_stimuli_is_never_served(make_study, settings, path):
    """The attack (with a row planted, e.g. by an old restore): an item image path naming another file."""
    study = make_study(n_test=4, n_sentinels=0, n_practice=0)
    (settings.MEDIA_ROOT / "stimuli" / "page.html").write_text("<script>alert(1)</script>")
    Item.objects.filter(study=study).update(p0_image=path, p1_image=path)
    client = APIClient()
    body = start(client, study).json()
    for trial in body["trials"]:
        assert client.get(trial["images"]["left"]).status_code == 404
        assert client.get(trial["images"]["right"]).status_code == 404
        assert client.get(trial["images"]["ref"]).status_code == 200  # a real stimulus still opens
