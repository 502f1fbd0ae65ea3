def test_me_with_api_key_reports_user_tenant_role_plan_and_trial(named, api_as):
    response = api_as(named.bob).get("/api/v1/me")
    assert response.status_code == 200
    body = response.json()
    assert body["success"] is True
    data = body["data"]
    assert data["user"]["email"] == "bob@acme.test"
    assert data["tenant"]["slug"] == "acme"
    assert data["role"] == "agent"
    assert data["plan"]["code"] == "basic"
    assert data["limits"]["max_sessions"] == 5
    assert data["trial_days_left"] == 7
