//! The 401 for a credential Keystone refused: which form was read (never its secret), and
//! whether Keystone refused the password or the scope, as far as its answer says.

use super::*;

/// Keystone's 401 body, as Keystone 22 writes it.
fn keystone_401(message: &str) -> CalloutAnswer {
    let body =
        serde_json::json!({"error": {"code": 401, "message": message, "title": "Unauthorized"}});
    CalloutAnswer {
        status: Some(401),
        body: body.to_string().into_bytes(),
        ..Default::default()
    }
}

const GENERIC: &str = "The request you have made requires authentication.";
const DEBUG: &str = " (Disable insecure_debug mode to suppress these details.)";

/// The 401 message for a request with these credential headers and this Keystone answer.
fn refused_with(
    world: &Rc<World>,
    ctx: u32,
    creds: &[(&'static str, String)],
    ks: &CalloutAnswer,
) -> String {
    let mut headers = get("/api/v1/query?query=up", None);
    headers.extend(creds.iter().cloned());
    let mut h = host(world, ctx, &headers);
    let mut f = Flow::new(shared(), ctx);
    assert_eq!(f.on_request_headers(&mut h, eos(true)), Action::Pause);
    let id = world.callouts.borrow().len() as u32;
    f.on_callout(&mut h, id, ks);
    assert_eq!(h.status(), Some(401));
    let (_, headers, body) = h.response.unwrap();
    assert!(headers.contains(&(
        "www-authenticate".into(),
        "Keystone uri=\"http://ks:5000/v3\"".into()
    )));
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    v["error"].as_str().unwrap().to_string()
}

fn basic(user: &str, password: &str) -> Vec<(&'static str, String)> {
    vec![(
        "authorization",
        format!("Basic {}", b64(&format!("{user}:{password}"))),
    )]
}

#[test]
fn each_form_is_named_and_no_secret_is_echoed() {
    let world = World::new();
    let pw = "pw-SECRET-1";
    let cases: Vec<(Vec<(&'static str, String)>, &str)> = vec![
        (vec![("x-auth-token", "tok-SECRET-2".into())], "Keystone refused the token in X-Auth-Token: "),
        (vec![("authorization", "Bearer tok-SECRET-3".into())], "Keystone refused the Bearer token in Authorization: "),
        (
            basic("alice@Default|team-a@Default", pw),
            "Keystone refused Basic auth as user name 'alice' in domain 'Default', scoped to project name 'team-a' in domain 'Default': ",
        ),
        (
            basic("alice@tenants|team-a", pw),
            "Keystone refused Basic auth as user name 'alice' in domain 'tenants', scoped to project name 'team-a' in domain 'tenants': ",
        ),
        (basic("u1|@tenants", pw), "Keystone refused Basic auth as user id 'u1', scoped to domain 'tenants': "),
        (basic("*ac1", "ac-SECRET-4"), "Keystone refused Basic auth as application credential id 'ac1': "),
        (
            basic("*ci@alice@tenants", "ac-SECRET-4"),
            "Keystone refused Basic auth as application credential name 'ci' of user name 'alice' in domain 'tenants': ",
        ),
        (
            vec![("x-application-credential-id", "ac1".into()), ("x-application-credential-secret", "ac-SECRET-5".into())],
            "Keystone refused application credential id 'ac1' (X-Application-Credential-Id): ",
        ),
    ];
    for (i, (creds, want)) in cases.iter().enumerate() {
        let m = refused_with(&world, i as u32 + 1, creds, &keystone_401(GENERIC));
        assert!(m.starts_with(want), "{m}");
        let is_token = i < 2;
        assert_eq!(
            m.contains("openstack token issue"),
            is_token,
            "only tokens are told to get a new one: {m}"
        );
    }
    let basic_values: Vec<String> = cases
        .iter()
        .flat_map(|(c, _)| {
            c.iter()
                .filter(|(k, _)| *k == "authorization")
                .map(|(_, v)| v.replace("Basic ", ""))
        })
        .collect();
    for line in world.logs.borrow().iter() {
        assert!(!line.contains("SECRET"), "{line}");
        assert!(
            basic_values.iter().all(|v| !line.contains(v.as_str())),
            "{line}"
        );
    }
}

#[test]
fn password_or_scope_as_keystone_says() {
    let world = World::new();
    let alice = basic("alice@tenants|team-b@tenants", "pw");
    // Keystone's default says nothing of why: the message says both, plainly.
    let m = refused_with(&world, 1, &alice, &keystone_401(GENERIC));
    assert!(m.ends_with(
        "Keystone does not say whether it refused the password or the scope (it says why only with insecure_debug): \
         the password may be wrong (or the user may not exist), or the user may have no role on that project \
         (or it may not exist)"
    ), "{m}");
    // With insecure_debug, or for a locked account, it does.
    let m = refused_with(
        &world,
        2,
        &basic("alice@tenants|team-b@tenants", "wrong"),
        &keystone_401(&format!("Invalid username or password{DEBUG}")),
    );
    assert!(
        m.ends_with(
            ": authentication failed: the password is wrong (or there is no user with that id)"
        ),
        "{m}"
    );
    let m = refused_with(
        &world,
        3,
        &basic("alice@tenants|team-b@tenants", "right"),
        &keystone_401(&format!("User u1 has no access to project p2{DEBUG}")),
    );
    assert!(m.ends_with(": the password is right, but the scope was refused: the user has no role on that project"), "{m}");
    let m = refused_with(
        &world,
        4,
        &basic("alice@tenants|team-zz@tenants", "right"),
        &keystone_401(&format!("Could not find project: team-zz.{DEBUG}")),
    );
    assert!(
        m.ends_with(": the scope was refused: there is no such project"),
        "{m}"
    );
    let m = refused_with(
        &world,
        5,
        &basic("alice@tenants|team-a@tenants", "x"),
        &keystone_401("The account is locked for user: u1."),
    );
    assert!(
        m.contains("authentication failed: the user's account is locked"),
        "{m}"
    );
    // An application credential Keystone does not know (404).
    let unknown = CalloutAnswer {
        status: Some(404),
        ..keystone_401("Could not find Application Credential: ac9.")
    };
    let m = refused_with(&world, 6, &basic("*ac9", "s"), &unknown);
    assert_eq!(m, "Keystone refused Basic auth as application credential id 'ac9': authentication failed: there is no such application credential");
}

#[test]
fn names_without_domains_are_pointed_out() {
    let m = refused_with(
        &World::new(),
        1,
        &basic("alice|team-a", "pw"),
        &keystone_401(GENERIC),
    );
    assert!(
        m.starts_with(
            "Keystone refused Basic auth as user id 'alice', scoped to project id 'team-a': "
        ),
        "{m}"
    );
    assert!(m.ends_with(
        "Note: 'alice' was read as a user id and 'team-a' as a project id, as neither names a domain; if they are \
         names, write alice@DOMAIN|team-a@DOMAIN (e.g. alice@Default|team-a@Default)"
    ), "{m}");
}

#[test]
fn a_refusal_remembered_still_names_the_form() {
    let world = World::new();
    let alice = basic("alice@tenants|team-b@tenants", "pw");
    refused_with(&world, 1, &alice, &keystone_401(GENERIC));
    let mut headers = get("/api/v1/query?query=up", None);
    headers.extend(alice);
    let mut h = host(&world, 2, &headers);
    Flow::new(shared(), 2).on_request_headers(&mut h, eos(true));
    assert_eq!(world.callouts.borrow().len(), 1, "not asked again");
    let v: serde_json::Value = serde_json::from_slice(&h.response.unwrap().2).unwrap();
    assert_eq!(
        v["error"],
        "Keystone refused Basic auth as user name 'alice' in domain 'tenants', scoped to project name 'team-b' in \
         domain 'tenants' less than 10 s ago (the filter does not ask again before then); check the password, and \
         that the user has a role on the project or domain"
    );
}
