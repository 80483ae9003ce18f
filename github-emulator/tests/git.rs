//! Git data backed by the real bare repository: refs (as crew's leases use them), commits, trees
//! and branches.

use crate::support::*;
use http::StatusCode;
use octocrab::params::repos::Reference;
use serde_json::{Value, json};

/// The sha `GET /git/ref/{ref}` answers, asserting it exists.
async fn ref_sha(gh: &TestGitHub, short: &str) -> String {
    let answer = gh
        .get(BOT, &format!("/repos/acme/widgets/git/ref/{short}"))
        .await;
    assert_eq!(answer.status, StatusCode::OK, "{short}: {}", answer.body);
    answer.body["object"]["sha"].as_str().unwrap().to_string()
}

/// A commit whose message is `message`, on `parents`, with the tree of `tree_of` (a commit).
async fn lease_commit(gh: &TestGitHub, message: &str, tree_of: &str, parents: &[&str]) -> String {
    let tree = gh
        .get(BOT, &format!("/repos/acme/widgets/git/commits/{tree_of}"))
        .await;
    assert_eq!(tree.status, StatusCode::OK);
    let answer = gh
        .post(
            BOT,
            "/repos/acme/widgets/git/commits",
            json!({"message": message, "tree": tree.body["tree"]["sha"], "parents": parents}),
        )
        .await;
    assert_eq!(answer.status, StatusCode::CREATED, "{}", answer.body);
    answer.body["sha"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn lease_refs_are_compare_and_swap() {
    let gh = TestGitHub::start().await;
    let bot = gh.client(Some(BOT));
    let repo = bot.repos("acme", "widgets");
    let main = repo
        .get_ref(&Reference::Branch("main".to_string()))
        .await
        .expect("octocrab reads the main ref");
    let octocrab::models::repos::Object::Commit { sha: main_sha, .. } = main.object else {
        panic!("main points at a commit: {:?}", main.object);
    };
    let main_tree = gh
        .get(BOT, &format!("/repos/acme/widgets/git/commits/{main_sha}"))
        .await
        .body["tree"]["sha"]
        .as_str()
        .unwrap()
        .to_string();

    // A lease commit through octocrab's typed API; its message is the lease JSON.
    let lease = r#"{"issue":7,"attempt":1,"worker":"w-1","state":"held"}"#;
    let first = repo
        .create_git_commit_object(lease, main_tree.clone())
        .parents(vec![main_sha.clone()])
        .send()
        .await
        .expect("octocrab creates a commit");
    assert_eq!(first.message, lease);
    assert_eq!(first.parents.len(), 1);
    assert_eq!(first.verification.reason, "unsigned");

    // Acquire: create the ref. A second create loses with 422.
    let created = gh
        .post(
            BOT,
            "/repos/acme/widgets/git/refs",
            json!({"ref": "refs/crew/leases/7", "sha": first.sha}),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    assert_eq!(created.body["ref"], "refs/crew/leases/7");
    assert_eq!(created.body["object"]["type"], "commit");
    assert_eq!(created.body["object"]["sha"], first.sha.as_str());
    assert!(
        created
            .header("location")
            .unwrap()
            .ends_with("/repos/acme/widgets/git/refs/crew/leases/7")
    );
    let again = gh
        .post(
            BOT,
            "/repos/acme/widgets/git/refs",
            json!({"ref": "refs/crew/leases/7", "sha": first.sha}),
        )
        .await;
    assert_eq!(again.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(again.body["message"], "Reference already exists");

    // Renew: fast-forward to a child commit.
    let renewed = lease_commit(
        &gh,
        r#"{"issue":7,"attempt":1,"state":"renewed"}"#,
        &first.sha,
        &[&first.sha],
    )
    .await;
    let forward = gh
        .patch(
            BOT,
            "/repos/acme/widgets/git/refs/crew/leases/7",
            json!({"sha": renewed, "force": false}),
        )
        .await;
    assert_eq!(forward.status, StatusCode::OK, "{}", forward.body);
    assert_eq!(forward.body["object"]["sha"], renewed.as_str());

    // A competitor that read the old tip builds on it: not a fast-forward any more.
    let rival = lease_commit(
        &gh,
        r#"{"issue":7,"attempt":2,"worker":"w-2"}"#,
        &first.sha,
        &[&first.sha],
    )
    .await;
    let lost = gh
        .patch(
            BOT,
            "/repos/acme/widgets/git/refs/crew/leases/7",
            json!({"sha": rival}),
        )
        .await;
    assert_eq!(lost.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(lost.body["message"], "Update is not a fast forward");
    assert_eq!(
        ref_sha(&gh, "crew/leases/7").await,
        renewed,
        "the loser changed nothing"
    );
    let forced = gh
        .patch(
            BOT,
            "/repos/acme/widgets/git/refs/crew/leases/7",
            json!({"sha": rival, "force": true}),
        )
        .await;
    assert_eq!(forced.status, StatusCode::OK);
    assert_eq!(ref_sha(&gh, "crew/leases/7").await, rival);

    // The lease is readable back through its commit message.
    let commit = gh
        .get(BOT, &format!("/repos/acme/widgets/git/commits/{rival}"))
        .await;
    assert_eq!(commit.status, StatusCode::OK);
    assert_eq!(
        commit.body["message"],
        r#"{"issue":7,"attempt":2,"worker":"w-2"}"#
    );
    assert_eq!(commit.body["parents"][0]["sha"], first.sha.as_str());
    assert_eq!(
        commit.body["author"]["email"],
        format!(
            "{}+crew-bot@users.noreply.github.com",
            gh.emulator.with_state(|s| s.user("crew-bot").unwrap().id)
        )
    );

    // Missing refs and objects, invalid names.
    let missing = gh
        .patch(
            BOT,
            "/repos/acme/widgets/git/refs/crew/leases/99",
            json!({"sha": rival}),
        )
        .await;
    assert_eq!(missing.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(missing.body["message"], "Reference does not exist");
    let unknown = gh
        .post(
            BOT,
            "/repos/acme/widgets/git/refs",
            json!({"ref": "refs/crew/leases/8", "sha": "0123456789012345678901234567890123456789"}),
        )
        .await;
    assert_eq!(unknown.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(unknown.body["message"], "Object does not exist");
    for bad in ["heads/no-prefix", "refs/onlyone", "refs/heads/bad..name"] {
        let answer = gh
            .post(
                BOT,
                "/repos/acme/widgets/git/refs",
                json!({"ref": bad, "sha": rival}),
            )
            .await;
        assert_eq!(answer.status, StatusCode::UNPROCESSABLE_ENTITY, "{bad}");
    }
    assert_eq!(
        gh.get(BOT, "/repos/acme/widgets/git/ref/crew/leases/99")
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        gh.get(
            BOT,
            "/repos/acme/widgets/git/commits/0123456789012345678901234567890123456789"
        )
        .await
        .status,
        StatusCode::NOT_FOUND
    );

    // Delete: 204, then 422 with no body (as GitHub's description has it), then 404 on read.
    assert_eq!(
        gh.delete(BOT, "/repos/acme/widgets/git/refs/crew/leases/7")
            .await
            .status,
        StatusCode::NO_CONTENT
    );
    let gone = gh
        .delete(BOT, "/repos/acme/widgets/git/refs/crew/leases/7")
        .await;
    assert_eq!(gone.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(gone.body, Value::Null);
    assert_eq!(
        gh.get(BOT, "/repos/acme/widgets/git/ref/crew/leases/7")
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    gh.assert_contract();
}

#[tokio::test]
async fn matching_refs_lists_every_lease_in_one_request() {
    let gh = TestGitHub::start().await;
    let main = ref_sha(&gh, "heads/main").await;
    for issue in 1..=35 {
        let sha = lease_commit(&gh, &format!("{{\"issue\":{issue}}}"), &main, &[&main]).await;
        let answer = gh
            .post(
                BOT,
                "/repos/acme/widgets/git/refs",
                json!({"ref": format!("refs/crew/leases/{issue}"), "sha": sha}),
            )
            .await;
        assert_eq!(answer.status, StatusCode::CREATED);
    }
    // One request with per_page=100 holds all 35.
    let all = gh
        .get(
            BOT,
            "/repos/acme/widgets/git/matching-refs/crew/leases/?per_page=100",
        )
        .await;
    assert_eq!(all.status, StatusCode::OK);
    let refs = all.body.as_array().unwrap();
    assert_eq!(refs.len(), 35);
    assert!(all.header("link").is_none());
    assert!(
        refs.iter()
            .all(|r| r["ref"].as_str().unwrap().starts_with("refs/crew/leases/"))
    );
    let mut names: Vec<&str> = refs.iter().map(|r| r["ref"].as_str().unwrap()).collect();
    let sorted = {
        let mut s = names.clone();
        s.sort();
        s
    };
    assert_eq!(names, sorted, "sorted by name");
    names.dedup();
    assert_eq!(names.len(), 35);

    // The default page is 30, with a Link to the rest on the emulator's own origin.
    let first = gh
        .get(BOT, "/repos/acme/widgets/git/matching-refs/crew/leases/")
        .await;
    assert_eq!(first.body.as_array().unwrap().len(), 30);
    let link = first.header("link").unwrap().to_string();
    assert!(
        link.contains(gh.emulator.base_url()) && link.contains("rel=\"next\""),
        "{link}"
    );
    let second = gh
        .get(
            BOT,
            "/repos/acme/widgets/git/matching-refs/crew/leases/?page=2",
        )
        .await;
    assert_eq!(second.body.as_array().unwrap().len(), 5);

    // A prefix matches like a string prefix; no match is an empty list.
    let prefix = gh
        .get(BOT, "/repos/acme/widgets/git/matching-refs/crew/leases/3")
        .await;
    let names: Vec<&str> = prefix
        .body
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["ref"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "refs/crew/leases/3",
            "refs/crew/leases/30",
            "refs/crew/leases/31",
            "refs/crew/leases/32",
            "refs/crew/leases/33",
            "refs/crew/leases/34",
            "refs/crew/leases/35"
        ]
    );
    let none = gh
        .get(BOT, "/repos/acme/widgets/git/matching-refs/crew/nothing/")
        .await;
    assert_eq!(none.status, StatusCode::OK);
    assert_eq!(none.body, json!([]));
    let heads = gh
        .get(OUTSIDER, "/repos/acme/widgets/git/matching-refs/heads/")
        .await;
    assert_eq!(
        heads.body.as_array().unwrap().len(),
        1,
        "readers may list refs"
    );
    gh.assert_contract();
}

#[tokio::test]
async fn trees_commits_and_branches_land_in_the_bare_repository() {
    let gh = TestGitHub::start().await;
    let main = ref_sha(&gh, "heads/main").await;
    let main_tree = gh
        .get(BOT, &format!("/repos/acme/widgets/git/commits/{main}"))
        .await
        .body["tree"]["sha"]
        .clone();

    // A blob by content in a new directory, an executable, and README removed.
    let tree = gh
        .post(
            BOT,
            "/repos/acme/widgets/git/trees",
            json!({"base_tree": main_tree, "tree": [
                {"path": "docs/guide/intro.md", "mode": "100644", "type": "blob", "content": "hello\n"},
                {"path": "run.sh", "mode": "100755", "type": "blob", "content": "#!/bin/sh\n"},
                {"path": "README.md", "mode": "100644", "type": "blob", "sha": null},
            ]}),
        )
        .await;
    assert_eq!(tree.status, StatusCode::CREATED, "{}", tree.body);
    let entries = tree.body["tree"].as_array().unwrap();
    let names: Vec<(&str, &str, &str)> = entries
        .iter()
        .map(|e| {
            (
                e["path"].as_str().unwrap(),
                e["mode"].as_str().unwrap(),
                e["type"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        names,
        [("docs", "040000", "tree"), ("run.sh", "100755", "blob")]
    );
    assert_eq!(entries[1]["size"], 10);
    assert_eq!(tree.body["truncated"], false);

    // A commit with an explicit author and date, then a branch on it through octocrab.
    let commit = gh
        .post(
            BOT,
            "/repos/acme/widgets/git/commits",
            json!({"message": "Add docs\n\nBody.", "tree": tree.body["sha"], "parents": [main],
                   "author": {"name": "Mona", "email": "mona@example.com", "date": "2024-01-02T03:04:05+02:00"}}),
        )
        .await;
    assert_eq!(commit.status, StatusCode::CREATED, "{}", commit.body);
    assert_eq!(commit.body["author"]["date"], "2024-01-02T01:04:05Z");
    assert_eq!(
        commit.body["committer"]["name"], "Mona",
        "the committer defaults to the author"
    );
    let sha = commit.body["sha"].as_str().unwrap().to_string();
    let bot = gh.client(Some(BOT));
    let branch_ref = bot
        .repos("acme", "widgets")
        .create_ref(&Reference::Branch("docs/intro".to_string()), sha.clone())
        .await
        .expect("octocrab creates a branch");
    assert_eq!(branch_ref.ref_field, "refs/heads/docs/intro");

    let branch = gh.get(BOT, "/repos/acme/widgets/branches/docs/intro").await;
    assert_eq!(branch.status, StatusCode::OK, "{}", branch.body);
    assert_eq!(branch.body["name"], "docs/intro");
    assert_eq!(branch.body["commit"]["sha"], sha.as_str());
    assert_eq!(
        branch.body["commit"]["commit"]["message"],
        "Add docs\n\nBody."
    );
    assert_eq!(branch.body["protected"], false);
    let missing = gh.get(BOT, "/repos/acme/widgets/branches/nope").await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    assert_eq!(missing.body["message"], "Branch not found");

    // The bare repository really holds it.
    let git_dir = gh
        .emulator
        .with_state(|s| s.repo("acme", "widgets").unwrap().git_dir.clone());
    let git = git2::Repository::open_bare(&git_dir).unwrap();
    let tip = git
        .find_reference("refs/heads/docs/intro")
        .unwrap()
        .peel_to_commit()
        .unwrap();
    assert_eq!(tip.id().to_string(), sha);
    let tree = tip.tree().unwrap();
    let intro = tree
        .get_path(std::path::Path::new("docs/guide/intro.md"))
        .unwrap();
    assert_eq!(git.find_blob(intro.id()).unwrap().content(), b"hello\n");
    assert!(tree.get_name("README.md").is_none());

    // Unknown tree or parent: 422.
    let bad_tree = gh
        .post(BOT, "/repos/acme/widgets/git/commits", json!({"message": "x", "tree": "0123456789012345678901234567890123456789", "parents": []}))
        .await;
    assert_eq!(bad_tree.status, StatusCode::UNPROCESSABLE_ENTITY);
    let bad_parent = gh
        .post(BOT, "/repos/acme/widgets/git/commits", json!({"message": "x", "tree": tree.id().to_string(), "parents": ["0123456789012345678901234567890123456789"]}))
        .await;
    assert_eq!(bad_parent.status, StatusCode::UNPROCESSABLE_ENTITY);
    let both = gh
        .post(BOT, "/repos/acme/widgets/git/trees", json!({"tree": [{"path": "a", "mode": "100644", "type": "blob", "content": "x", "sha": sha}]}))
        .await;
    assert_eq!(both.status, StatusCode::UNPROCESSABLE_ENTITY);
    gh.assert_contract();
}

#[tokio::test]
async fn writes_need_push_access_and_refused_namespaces_are_422() {
    let mut world = github_emulator::World::default();
    world.repos[0].refused_ref_prefixes = vec!["refs/crew/".to_string()];
    let gh = TestGitHub::start_with(world).await;
    let main = ref_sha(&gh, "heads/main").await;

    let outsider = gh
        .post(
            OUTSIDER,
            "/repos/acme/widgets/git/refs",
            json!({"ref": "refs/heads/x/y", "sha": main}),
        )
        .await;
    assert_eq!(outsider.status, StatusCode::FORBIDDEN);
    assert_eq!(
        outsider.body["message"],
        "Must have push access to repository"
    );
    let anonymous = gh
        .send(
            None,
            http::Method::POST,
            "/repos/acme/widgets/git/refs",
            Some(json!({"ref": "refs/heads/x/y", "sha": main})),
            &[],
        )
        .await;
    assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED);
    for (method, path) in [
        (
            http::Method::PATCH,
            "/repos/acme/widgets/git/refs/heads/main",
        ),
        (
            http::Method::DELETE,
            "/repos/acme/widgets/git/refs/heads/main",
        ),
        (http::Method::POST, "/repos/acme/widgets/git/commits"),
        (http::Method::POST, "/repos/acme/widgets/git/trees"),
    ] {
        let answer = gh
            .send(
                Some(OUTSIDER),
                method.clone(),
                path,
                Some(json!({"sha": main})),
                &[],
            )
            .await;
        assert_eq!(answer.status, StatusCode::FORBIDDEN, "{method} {path}");
    }
    assert_eq!(ref_sha(&gh, "heads/main").await, main);

    // The host refuses the lease namespace; the fallback under refs/heads/ works.
    let refused = gh
        .post(
            BOT,
            "/repos/acme/widgets/git/refs",
            json!({"ref": "refs/crew/leases/1", "sha": main}),
        )
        .await;
    assert_eq!(refused.status, StatusCode::UNPROCESSABLE_ENTITY);
    let fallback = gh
        .post(
            BOT,
            "/repos/acme/widgets/git/refs",
            json!({"ref": "refs/heads/crew/leases/1", "sha": main}),
        )
        .await;
    assert_eq!(fallback.status, StatusCode::CREATED);

    // Private repositories are invisible to outsiders.
    let mut world = github_emulator::World::default();
    world.repos[0].private = true;
    let private = TestGitHub::start_with(world).await;
    assert_eq!(
        private
            .get(OUTSIDER, "/repos/acme/widgets/git/ref/heads/main")
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        private
            .get(OUTSIDER, "/repos/acme/widgets/branches/main")
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        private
            .get(BOT, "/repos/acme/widgets/branches/main")
            .await
            .status,
        StatusCode::OK
    );
    gh.assert_contract();
    private.assert_contract();
}
