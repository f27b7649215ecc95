-- A ledger written by the code before migrations (commit 62f18f6): schema and rows.
BEGIN TRANSACTION;
CREATE TABLE erasure_chain_head (
	id INTEGER NOT NULL, 
	last_hash VARCHAR(64) NOT NULL, 
	last_position BIGINT NOT NULL, 
	PRIMARY KEY (id)
);
INSERT INTO "erasure_chain_head" VALUES(1,'568f899691146e96f48a2de3cbbfa87aa720d1dd2c39d3944d83d8f897d22158',16);
CREATE TABLE erasure_data_keys (
	request_id VARCHAR(36) NOT NULL, 
	data_key BLOB, 
	created_at DATETIME NOT NULL, 
	tasks_published_at DATETIME, 
	destroyed_at DATETIME, 
	PRIMARY KEY (request_id)
);
INSERT INTO "erasure_data_keys" VALUES('7d5e3c1a-4b2f-4c8d-9e6f-0a1b2c3d4e5f',NULL,'2026-11-26 10:00:00.123456','2026-11-26 10:00:00.123456','2026-12-01 10:00:00.123456');
INSERT INTO "erasure_data_keys" VALUES('0b8a1c52-9d3e-4f61-a7b2-5c4d3e2f1a00',NULL,'2026-11-26 10:00:00.123456','2026-11-26 10:00:00.123456','2026-12-01 10:00:00.123456');
CREATE TABLE erasure_events (
	id INTEGER NOT NULL, 
	position BIGINT NOT NULL, 
	request_id VARCHAR(36) NOT NULL, 
	system VARCHAR(64), 
	kind VARCHAR(32) NOT NULL, 
	attempt INTEGER, 
	status VARCHAR(32), 
	payload TEXT NOT NULL, 
	recorded_at DATETIME NOT NULL, 
	dedupe_key VARCHAR(200) NOT NULL, 
	prev_hash VARCHAR(64) NOT NULL, 
	hash VARCHAR(64) NOT NULL, 
	PRIMARY KEY (id), 
	UNIQUE (position), 
	UNIQUE (dedupe_key)
);
INSERT INTO "erasure_events" VALUES(1,1,'7d5e3c1a-4b2f-4c8d-9e6f-0a1b2c3d4e5f',NULL,'planned',NULL,'in_progress','{"due_at":"2026-12-26T10:00:00.123456+00:00","received_at":"2026-11-26T10:00:00.123456+00:00","targets":["brevo","site-db"]}','2026-11-26 10:00:00.123456','7d5e3c1a-4b2f-4c8d-9e6f-0a1b2c3d4e5f:planned','0000000000000000000000000000000000000000000000000000000000000000','5d0f39adbcd426240fa6fa2fff471ce5c300922b58f5ab41b9ab9bdeb2a66306');
INSERT INTO "erasure_events" VALUES(2,2,'0b8a1c52-9d3e-4f61-a7b2-5c4d3e2f1a00',NULL,'planned',NULL,'in_progress','{"due_at":"2026-12-26T10:00:00.123456+00:00","received_at":"2026-11-26T10:00:00.123456+00:00","targets":["brevo","crm"]}','2026-11-26 10:00:00.123456','0b8a1c52-9d3e-4f61-a7b2-5c4d3e2f1a00:planned','5d0f39adbcd426240fa6fa2fff471ce5c300922b58f5ab41b9ab9bdeb2a66306','95c9e709810726dc94053951850afec365c5541e4111c297e0d8b819c9b06b38');
INSERT INTO "erasure_events" VALUES(3,3,'7d5e3c1a-4b2f-4c8d-9e6f-0a1b2c3d4e5f','brevo','outcome',1,'erased','{"attempt":1,"error":null,"evidence":null,"holds":[],"next_attempt_at":null,"occurred_at":"2026-11-26T10:00:00.123456Z","purpose":"erase","request_id":"7d5e3c1a-4b2f-4c8d-9e6f-0a1b2c3d4e5f","status":"erased","system":"brevo"}','2026-11-26 10:00:05.123456','7d5e3c1a-4b2f-4c8d-9e6f-0a1b2c3d4e5f:brevo:1:erased','95c9e709810726dc94053951850afec365c5541e4111c297e0d8b819c9b06b38','c6872fbbce5509c6542d5d255c757604848e95892b11706f7fd2c7f99a8359dc');
INSERT INTO "erasure_events" VALUES(4,4,'7d5e3c1a-4b2f-4c8d-9e6f-0a1b2c3d4e5f','site-db','outcome',1,'held','{"attempt":1,"error":null,"evidence":null,"holds":[{"citation":"Code de commerce, art. L123-22","data_category":"invoices","legal_basis":"GDPR Art. 17(3)(b)","retain_until":"2026-11-28T10:00:00.123456Z"}],"next_attempt_at":null,"occurred_at":"2026-11-26T10:00:00.123456Z","purpose":"erase","request_id":"7d5e3c1a-4b2f-4c8d-9e6f-0a1b2c3d4e5f","status":"held","system":"site-db"}','2026-11-26 10:00:05.123456','7d5e3c1a-4b2f-4c8d-9e6f-0a1b2c3d4e5f:site-db:1:held','c6872fbbce5509c6542d5d255c757604848e95892b11706f7fd2c7f99a8359dc','eab1f4ffdc46465d2ebdfff048e8c4014a431606436778e65bbbf78c207a534e');
INSERT INTO "erasure_events" VALUES(5,5,'0b8a1c52-9d3e-4f61-a7b2-5c4d3e2f1a00','brevo','outcome',1,'failed','{"attempt":1,"error":null,"evidence":null,"holds":[],"next_attempt_at":null,"occurred_at":"2026-11-26T10:00:00.123456Z","purpose":"erase","request_id":"0b8a1c52-9d3e-4f61-a7b2-5c4d3e2f1a00","status":"failed","system":"brevo"}','2026-11-26 10:00:05.123456','0b8a1c52-9d3e-4f61-a7b2-5c4d3e2f1a00:brevo:1:failed','eab1f4ffdc46465d2ebdfff048e8c4014a431606436778e65bbbf78c207a534e','0fdddcf4affc3441222b66804d7bcfaa99e77b7caab26352e53c6dc48813fbee');
INSERT INTO "erasure_events" VALUES(6,6,'7d5e3c1a-4b2f-4c8d-9e6f-0a1b2c3d4e5f',NULL,'completed',NULL,'completed_with_holds','{"on_time":true}','2026-11-26 10:00:05.123456','7d5e3c1a-4b2f-4c8d-9e6f-0a1b2c3d4e5f:completed','0fdddcf4affc3441222b66804d7bcfaa99e77b7caab26352e53c6dc48813fbee','6fedfea106cb63ec9f1794b0933cd603cbc2dc6f514aa051c377825b9fb88b81');
INSERT INTO "erasure_events" VALUES(7,7,'0b8a1c52-9d3e-4f61-a7b2-5c4d3e2f1a00','crm','redriven',2,'planned','{"silent_since":"2026-11-26T10:00:00.123456+00:00"}','2026-11-26 10:05:00.123456','0b8a1c52-9d3e-4f61-a7b2-5c4d3e2f1a00:crm:2:redriven','6fedfea106cb63ec9f1794b0933cd603cbc2dc6f514aa051c377825b9fb88b81','4b64c45a1822a7387598d409673b88202528223bb69bec1e3e7611c584bd2d8f');
INSERT INTO "erasure_events" VALUES(8,8,'0b8a1c52-9d3e-4f61-a7b2-5c4d3e2f1a00','crm','outcome',2,'not_found','{"attempt":2,"error":null,"evidence":null,"holds":[],"next_attempt_at":null,"occurred_at":"2026-11-26T10:00:00.123456Z","purpose":"erase","request_id":"0b8a1c52-9d3e-4f61-a7b2-5c4d3e2f1a00","status":"not_found","system":"crm"}','2026-11-26 10:06:00.123456','0b8a1c52-9d3e-4f61-a7b2-5c4d3e2f1a00:crm:2:not_found','4b64c45a1822a7387598d409673b88202528223bb69bec1e3e7611c584bd2d8f','123505b906ecf9089a28633f72dc6e88e2591234f3bfd658e6bdabfd67dfbf6e');
INSERT INTO "erasure_events" VALUES(9,9,'0b8a1c52-9d3e-4f61-a7b2-5c4d3e2f1a00',NULL,'completed',NULL,'needs_attention','{"on_time":true}','2026-11-26 10:06:00.123456','0b8a1c52-9d3e-4f61-a7b2-5c4d3e2f1a00:completed','123505b906ecf9089a28633f72dc6e88e2591234f3bfd658e6bdabfd67dfbf6e','908c98720ff1c42d8d89e629d93d8e8cceb98f61cbd8cdf80f17575cb114da83');
INSERT INTO "erasure_events" VALUES(10,10,'0b8a1c52-9d3e-4f61-a7b2-5c4d3e2f1a00','brevo','officer_retry',2,'retrying','{"author":"officer-1"}','2026-11-26 11:00:00.123456','0b8a1c52-9d3e-4f61-a7b2-5c4d3e2f1a00:brevo:2:officer_retry','908c98720ff1c42d8d89e629d93d8e8cceb98f61cbd8cdf80f17575cb114da83','162a45695a70e53567dc1c8a3f232685e19d882fc1d0a51495a9f048f1694ad6');
INSERT INTO "erasure_events" VALUES(11,11,'0b8a1c52-9d3e-4f61-a7b2-5c4d3e2f1a00','brevo','outcome',2,'erased','{"attempt":2,"error":null,"evidence":null,"holds":[],"next_attempt_at":null,"occurred_at":"2026-11-26T10:00:00.123456Z","purpose":"erase","request_id":"0b8a1c52-9d3e-4f61-a7b2-5c4d3e2f1a00","status":"erased","system":"brevo"}','2026-11-26 11:01:00.123456','0b8a1c52-9d3e-4f61-a7b2-5c4d3e2f1a00:brevo:2:erased','162a45695a70e53567dc1c8a3f232685e19d882fc1d0a51495a9f048f1694ad6','584aba015150738ba2e383797f9db0b3683b92a11e153d041d2aa5541c325629');
INSERT INTO "erasure_events" VALUES(12,12,'0b8a1c52-9d3e-4f61-a7b2-5c4d3e2f1a00',NULL,'completed',NULL,'completed','{"on_time":true}','2026-11-26 11:01:00.123456','0b8a1c52-9d3e-4f61-a7b2-5c4d3e2f1a00:completed:1','584aba015150738ba2e383797f9db0b3683b92a11e153d041d2aa5541c325629','1ae15b943bc789d8c95f8dd774945bc5bf82a65d927181d492239a6e9cde388d');
INSERT INTO "erasure_events" VALUES(13,13,'7d5e3c1a-4b2f-4c8d-9e6f-0a1b2c3d4e5f','site-db','release_requested',2,'held','{"categories":["invoices"],"retain_until":"2026-11-28 10:00:00.123456"}','2026-11-28 10:00:01.123456','7d5e3c1a-4b2f-4c8d-9e6f-0a1b2c3d4e5f:site-db:2:release_requested','1ae15b943bc789d8c95f8dd774945bc5bf82a65d927181d492239a6e9cde388d','8ccb8d26e469ed786dc79a18fce680474a07020a7696a85294b0e4bc7e895d54');
INSERT INTO "erasure_events" VALUES(14,14,'7d5e3c1a-4b2f-4c8d-9e6f-0a1b2c3d4e5f','site-db','released',2,'erased','{"attempt":2,"error":null,"evidence":null,"holds":[],"next_attempt_at":null,"occurred_at":"2026-11-26T10:00:00.123456Z","purpose":"release","request_id":"7d5e3c1a-4b2f-4c8d-9e6f-0a1b2c3d4e5f","status":"erased","system":"site-db"}','2026-11-28 10:00:02.123456','7d5e3c1a-4b2f-4c8d-9e6f-0a1b2c3d4e5f:site-db:2:erased:release','8ccb8d26e469ed786dc79a18fce680474a07020a7696a85294b0e4bc7e895d54','f1009abb5617407bdd236dc6c360615fb31773a93b8bcf964d91eb4c15fbedb5');
INSERT INTO "erasure_events" VALUES(15,15,'0b8a1c52-9d3e-4f61-a7b2-5c4d3e2f1a00',NULL,'data_key_destroyed',NULL,NULL,'{"grace_s":86400}','2026-12-01 10:00:00.123456','0b8a1c52-9d3e-4f61-a7b2-5c4d3e2f1a00:data_key_destroyed','f1009abb5617407bdd236dc6c360615fb31773a93b8bcf964d91eb4c15fbedb5','91ab2d846e7fa89070b8d6d9736725fce2c818fafa8ca958d93a371fbeefa9ab');
INSERT INTO "erasure_events" VALUES(16,16,'7d5e3c1a-4b2f-4c8d-9e6f-0a1b2c3d4e5f',NULL,'data_key_destroyed',NULL,NULL,'{"grace_s":86400}','2026-12-01 10:00:00.123456','7d5e3c1a-4b2f-4c8d-9e6f-0a1b2c3d4e5f:data_key_destroyed','91ab2d846e7fa89070b8d6d9736725fce2c818fafa8ca958d93a371fbeefa9ab','568f899691146e96f48a2de3cbbfa87aa720d1dd2c39d3944d83d8f897d22158');
CREATE TABLE erasure_holds (
	request_id VARCHAR(36) NOT NULL, 
	system VARCHAR(64) NOT NULL, 
	data_category VARCHAR(64) NOT NULL, 
	legal_basis VARCHAR(200) NOT NULL, 
	citation VARCHAR(200) NOT NULL, 
	retain_until DATETIME NOT NULL, 
	recorded_at DATETIME NOT NULL, 
	release_requested_at DATETIME, 
	released_at DATETIME, 
	PRIMARY KEY (request_id, system, data_category)
);
INSERT INTO "erasure_holds" VALUES('7d5e3c1a-4b2f-4c8d-9e6f-0a1b2c3d4e5f','site-db','invoices','GDPR Art. 17(3)(b)','Code de commerce, art. L123-22','2026-11-28 10:00:00.123456','2026-11-26 10:00:05.123456','2026-11-28 10:00:01.123456','2026-11-28 10:00:02.123456');
CREATE TABLE erasure_notifications (
	notification_id VARCHAR(100) NOT NULL, 
	request_id VARCHAR(36) NOT NULL, 
	kind VARCHAR(16) NOT NULL, 
	status VARCHAR(32) NOT NULL, 
	due_at DATETIME NOT NULL, 
	created_at DATETIME NOT NULL, 
	next_attempt_at DATETIME NOT NULL, 
	attempts INTEGER NOT NULL, 
	delivered_at DATETIME, 
	last_error VARCHAR(200), 
	PRIMARY KEY (notification_id)
);
INSERT INTO "erasure_notifications" VALUES('7d5e3c1a-4b2f-4c8d-9e6f-0a1b2c3d4e5f:completed','7d5e3c1a-4b2f-4c8d-9e6f-0a1b2c3d4e5f','completed','completed_with_holds','2026-12-26 10:00:00.123456','2026-11-26 10:00:05.123456','2026-11-26 10:00:05.123456',0,NULL,NULL);
INSERT INTO "erasure_notifications" VALUES('0b8a1c52-9d3e-4f61-a7b2-5c4d3e2f1a00:completed','0b8a1c52-9d3e-4f61-a7b2-5c4d3e2f1a00','completed','needs_attention','2026-12-26 10:00:00.123456','2026-11-26 10:06:00.123456','2026-11-26 10:06:00.123456',0,NULL,NULL);
INSERT INTO "erasure_notifications" VALUES('0b8a1c52-9d3e-4f61-a7b2-5c4d3e2f1a00:completed:1','0b8a1c52-9d3e-4f61-a7b2-5c4d3e2f1a00','completed','completed','2026-12-26 10:00:00.123456','2026-11-26 11:01:00.123456','2026-11-26 11:01:00.123456',0,NULL,NULL);
CREATE TABLE erasure_requests (
	request_id VARCHAR(36) NOT NULL, 
	subject_ref VARCHAR(200) NOT NULL, 
	received_at DATETIME NOT NULL, 
	due_at DATETIME NOT NULL, 
	planned_at DATETIME NOT NULL, 
	status VARCHAR(32) NOT NULL, 
	completed_at DATETIME, 
	on_time BOOLEAN, 
	completion_published BOOLEAN NOT NULL, 
	sealed_identities TEXT NOT NULL, 
	scope TEXT, 
	channel VARCHAR(32), 
	verification VARCHAR(32), 
	extension_months INTEGER NOT NULL, 
	reopened INTEGER NOT NULL, 
	extension_reason TEXT, 
	PRIMARY KEY (request_id)
);
INSERT INTO "erasure_requests" VALUES('7d5e3c1a-4b2f-4c8d-9e6f-0a1b2c3d4e5f','sr_7d5e','2026-11-26 10:00:00.123456','2026-12-26 10:00:00.123456','2026-11-26 10:00:00.123456','completed_with_holds','2026-11-26 10:00:05.123456',1,1,'{"alg":"secretbox-xsalsa20poly1305","key_id":"7d5e3c1a-4b2f-4c8d-9e6f-0a1b2c3d4e5f","ciphertext":"c2VjcmV0"}',NULL,NULL,NULL,0,0,NULL);
INSERT INTO "erasure_requests" VALUES('0b8a1c52-9d3e-4f61-a7b2-5c4d3e2f1a00','sr_0b8a','2026-11-26 10:00:00.123456','2026-12-26 10:00:00.123456','2026-11-26 10:00:00.123456','completed','2026-11-26 11:01:00.123456',1,1,'{"alg":"secretbox-xsalsa20poly1305","key_id":"0b8a1c52-9d3e-4f61-a7b2-5c4d3e2f1a00","ciphertext":"c2VjcmV0"}',NULL,NULL,NULL,0,1,NULL);
CREATE TABLE erasure_system_outcomes (
	request_id VARCHAR(36) NOT NULL, 
	system VARCHAR(64) NOT NULL, 
	status VARCHAR(16) NOT NULL, 
	attempt INTEGER NOT NULL, 
	final BOOLEAN NOT NULL, 
	expected_turnaround_s FLOAT NOT NULL, 
	expected_by DATETIME NOT NULL, 
	updated_at DATETIME NOT NULL, 
	evidence TEXT, 
	holds TEXT, 
	error TEXT, 
	PRIMARY KEY (request_id, system)
);
INSERT INTO "erasure_system_outcomes" VALUES('7d5e3c1a-4b2f-4c8d-9e6f-0a1b2c3d4e5f','brevo','erased',1,1,60.0,'2026-11-26 10:01:05.123456','2026-11-26 10:00:05.123456',NULL,NULL,NULL);
INSERT INTO "erasure_system_outcomes" VALUES('7d5e3c1a-4b2f-4c8d-9e6f-0a1b2c3d4e5f','site-db','held',2,1,60.0,'2026-11-26 10:01:05.123456','2026-11-26 10:00:05.123456',NULL,'[{"citation":"Code de commerce, art. L123-22","data_category":"invoices","legal_basis":"GDPR Art. 17(3)(b)","retain_until":"2026-11-28T10:00:00.123456Z"}]',NULL);
INSERT INTO "erasure_system_outcomes" VALUES('0b8a1c52-9d3e-4f61-a7b2-5c4d3e2f1a00','brevo','erased',2,1,60.0,'2026-11-26 11:02:00.123456','2026-11-26 11:01:00.123456',NULL,NULL,NULL);
INSERT INTO "erasure_system_outcomes" VALUES('0b8a1c52-9d3e-4f61-a7b2-5c4d3e2f1a00','crm','not_found',2,1,60.0,'2026-11-26 10:07:00.123456','2026-11-26 10:06:00.123456',NULL,NULL,NULL);
CREATE TABLE intake_receipts (
	request_id VARCHAR(36) NOT NULL, 
	client VARCHAR(64) NOT NULL, 
	body_sha256 VARCHAR(64) NOT NULL, 
	received_at DATETIME NOT NULL, 
	due_at DATETIME NOT NULL, 
	accepted_at DATETIME NOT NULL, 
	PRIMARY KEY (request_id)
);
CREATE INDEX ix_erasure_requests_subject_ref ON erasure_requests (subject_ref);
CREATE INDEX ix_erasure_requests_status ON erasure_requests (status);
CREATE INDEX ix_erasure_requests_due_at ON erasure_requests (due_at);
CREATE INDEX ix_erasure_system_outcomes_expected_by ON erasure_system_outcomes (expected_by);
CREATE INDEX ix_erasure_events_request_id ON erasure_events (request_id);
CREATE INDEX ix_erasure_holds_retain_until ON erasure_holds (retain_until);
CREATE INDEX ix_erasure_notifications_request_id ON erasure_notifications (request_id);
CREATE INDEX ix_erasure_notifications_next_attempt_at ON erasure_notifications (next_attempt_at);
COMMIT;
