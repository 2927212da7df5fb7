# Channel template for the FreeSWITCH simulator, taken from the real CHANNEL_DATA / event captures
# (tests/fixtures/outbound-session.*, FreeSWITCH 1.10.12). Header order is FreeSWITCH's.
# Values are stored DECODED (the codec URL-encodes them on the wire); \r \n \\ are escapes.
# ${name} placeholders are filled per call / per event. Sections:
#   event_base        every event: Event-Name .. Event-Sequence
#   channel_profile   CHANNEL_DATA (connect reply) only: the caller profile with prefix Channel-
#   basic             switch_channel_event_set_basic_data (Hangup-Cause is inserted after Answer-State)
#   codecs            present once media is up (after answer)
#   caller            the caller profile with prefix Caller-
#   variables         channel variables of the ringing channel
#   variables_media   set when the call is answered (media negotiated)
#   variables_answer  SIP dialog variables re-set on the ACK (move to the end of the list)
#   variables_hangup  added at hangup (CHANNEL_HANGUP_COMPLETE)

[event_base]
Event-Name: ${event_name}
Core-UUID: ${core_uuid}
FreeSWITCH-Hostname: vm
FreeSWITCH-Switchname: vm
FreeSWITCH-IPv4: 192.0.2.2
FreeSWITCH-IPv6: fd00::2
Event-Date-Local: ${date_local}
Event-Date-GMT: ${date_gmt}
Event-Date-Timestamp: ${timestamp_us}
Event-Calling-File: ${calling_file}
Event-Calling-Function: ${calling_function}
Event-Calling-Line-Number: ${calling_line}
Event-Sequence: ${sequence}

[channel_profile]
Channel-Direction: inbound
Channel-Logical-Direction: inbound
Channel-Username: ${caller_number}
Channel-Dialplan: XML
Channel-Caller-ID-Name: ${caller_name}
Channel-Caller-ID-Number: ${caller_number}
Channel-Orig-Caller-ID-Name: ${caller_name}
Channel-Orig-Caller-ID-Number: ${caller_number}
Channel-Network-Addr: ${network_addr}
Channel-ANI: ${caller_number}
Channel-Destination-Number: ${destination}
Channel-Unique-ID: ${uuid}
Channel-Source: mod_sofia
Channel-Context: public
Channel-Channel-Name: ${channel_name}
Channel-Profile-Index: 1
Channel-Profile-Created-Time: ${created_us}
Channel-Channel-Created-Time: ${created_us}
Channel-Channel-Answered-Time: ${answered_us}
Channel-Channel-Progress-Time: 0
Channel-Channel-Progress-Media-Time: ${progress_media_us}
Channel-Channel-Hangup-Time: ${hangup_us}
Channel-Channel-Transfer-Time: 0
Channel-Channel-Resurrect-Time: 0
Channel-Channel-Bridged-Time: 0
Channel-Channel-Last-Hold: 0
Channel-Channel-Hold-Accum: 0
Channel-Screen-Bit: true
Channel-Privacy-Hide-Name: false
Channel-Privacy-Hide-Number: false

[basic]
Channel-State: ${channel_state}
Channel-Call-State: ${call_state}
Channel-State-Number: ${state_number}
Channel-Name: ${channel_name}
Unique-ID: ${uuid}
Call-Direction: inbound
Presence-Call-Direction: inbound
Channel-HIT-Dialplan: true
Channel-Call-UUID: ${uuid}
Answer-State: ${answer_state}

[codecs]
Channel-Read-Codec-Name: PCMU
Channel-Read-Codec-Rate: 8000
Channel-Read-Codec-Bit-Rate: 64000
Channel-Write-Codec-Name: PCMU
Channel-Write-Codec-Rate: 8000
Channel-Write-Codec-Bit-Rate: 64000

[caller]
Caller-Direction: inbound
Caller-Logical-Direction: inbound
Caller-Username: ${caller_number}
Caller-Dialplan: XML
Caller-Caller-ID-Name: ${caller_name}
Caller-Caller-ID-Number: ${caller_number}
Caller-Orig-Caller-ID-Name: ${caller_name}
Caller-Orig-Caller-ID-Number: ${caller_number}
Caller-Network-Addr: ${network_addr}
Caller-ANI: ${caller_number}
Caller-Destination-Number: ${destination}
Caller-Unique-ID: ${uuid}
Caller-Source: mod_sofia
Caller-Context: public
Caller-Channel-Name: ${channel_name}
Caller-Profile-Index: 1
Caller-Profile-Created-Time: ${created_us}
Caller-Channel-Created-Time: ${created_us}
Caller-Channel-Answered-Time: ${answered_us}
Caller-Channel-Progress-Time: 0
Caller-Channel-Progress-Media-Time: ${progress_media_us}
Caller-Channel-Hangup-Time: ${hangup_us}
Caller-Channel-Transfer-Time: 0
Caller-Channel-Resurrect-Time: 0
Caller-Channel-Bridged-Time: 0
Caller-Channel-Last-Hold: 0
Caller-Channel-Hold-Accum: 0
Caller-Screen-Bit: true
Caller-Privacy-Hide-Name: false
Caller-Privacy-Hide-Number: false

[variables]
variable_direction: inbound
variable_uuid: ${uuid}
variable_session_id: ${session_id}
variable_sip_from_user: ${caller_number}
variable_sip_from_port: 5062
variable_sip_from_uri: ${from_uri}
variable_sip_from_host: 127.0.0.1
variable_video_media_flow: disabled
variable_text_media_flow: disabled
variable_channel_name: ${channel_name}
variable_sip_call_id: ${sip_call_id}
variable_sip_local_network_addr: 127.0.0.1
variable_sip_network_ip: 127.0.0.1
variable_sip_network_port: 5062
variable_sip_invite_stamp: ${created_us}
variable_sip_received_ip: 127.0.0.1
variable_sip_received_port: 5062
variable_sip_via_protocol: udp
variable_sip_from_user_stripped: ${caller_number}
variable_sip_from_tag: ${from_tag}
variable_sofia_profile_name: external
variable_sofia_profile_url: sip:mod_sofia@127.0.0.1:5080
variable_recovery_profile_name: external
variable_sip_full_via: SIP/2.0/UDP 127.0.0.1:5062;branch=${via_branch}
variable_sip_from_display: ${caller_name}
variable_sip_full_from: "${caller_name}" <sip:${from_uri}>;tag=${from_tag}
variable_sip_full_to: <sip:${to_uri}>
variable_sip_req_user: ${destination}
variable_sip_req_port: 5080
variable_sip_req_uri: ${to_uri}
variable_sip_req_host: 127.0.0.1
variable_sip_to_user: ${destination}
variable_sip_to_port: 5080
variable_sip_to_uri: ${to_uri}
variable_sip_to_host: 127.0.0.1
variable_sip_contact_user: ${caller_number}
variable_sip_contact_port: 5062
variable_sip_contact_uri: ${from_uri}
variable_sip_contact_host: 127.0.0.1
variable_sip_subject: ${sip_subject}
variable_sip_via_host: 127.0.0.1
variable_sip_via_port: 5062
variable_max_forwards: 70
variable_switch_r_sdp: v=0\r\no=user1 53655765 2353687637 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 16000 RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-15\r\na=ptime:20\r\n
variable_ep_codec_string: CORE_PCM_MODULE.PCMU@8000h@20i@64000b
variable_call_uuid: ${uuid}
variable_outside_call: true
variable_RFC2822_DATE: ${rfc2822_date}
variable_export_vars: RFC2822_DATE
variable_rtp_use_codec_string: OPUS,G722,PCMU,PCMA,H264,VP8
variable_socket_host: 127.0.0.1

[variables_media]
variable_remote_video_media_flow: inactive
variable_remote_text_media_flow: inactive
variable_remote_audio_media_flow: sendrecv
variable_audio_media_flow: sendrecv
variable_rtp_audio_recv_pt: 0
variable_rtp_use_codec_name: PCMU
variable_rtp_use_codec_rate: 8000
variable_rtp_use_codec_ptime: 20
variable_rtp_use_codec_channels: 1
variable_rtp_last_audio_codec_string: PCMU@8000h@20i@1c
variable_read_codec: PCMU
variable_original_read_codec: PCMU
variable_read_rate: 8000
variable_original_read_rate: 8000
variable_write_codec: PCMU
variable_write_rate: 8000
variable_dtmf_type: rfc2833
variable_local_media_ip: 127.0.0.1
variable_local_media_port: ${local_media_port}
variable_advertised_media_ip: 127.0.0.1
variable_rtp_use_timer_name: soft
variable_rtp_use_pt: 0
variable_rtp_use_ssrc: ${ssrc}
variable_rtp_2833_send_payload: 101
variable_rtp_2833_recv_payload: 101
variable_remote_media_ip: 127.0.0.1
variable_remote_media_port: 16000
variable_rtp_local_sdp_str: v=0\r\no=FreeSWITCH 1795565515 1795565516 IN IP4 127.0.0.1\r\ns=FreeSWITCH\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 29546 RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-15\r\na=ptime:20\r\na=sendrecv\r\n
variable_endpoint_disposition: ANSWER

[variables_answer]
variable_sip_to_tag: ${to_tag}
variable_sip_from_tag: ${from_tag}
variable_sip_cseq: 1
variable_sip_call_id: ${sip_call_id}
variable_sip_full_via: SIP/2.0/UDP 127.0.0.1:5062;branch=${via_branch}
variable_sip_from_display: ${caller_name}
variable_sip_full_from: "${caller_name}" <sip:${from_uri}>;tag=${from_tag}
variable_sip_full_to: <sip:${to_uri}>;tag=${to_tag}

[variables_hangup]
variable_hangup_cause: ${hangup_cause}
variable_hangup_cause_q850: ${hangup_q850}
variable_digits_dialed: none
variable_start_stamp: ${created_stamp}
variable_profile_start_stamp: ${created_stamp}
variable_answer_stamp: ${answer_stamp}
variable_progress_media_stamp: ${created_stamp}
variable_end_stamp: ${end_stamp}
variable_start_epoch: ${created_epoch}
variable_start_uepoch: ${created_us}
variable_profile_start_epoch: ${created_epoch}
variable_profile_start_uepoch: ${created_us}
variable_answer_epoch: ${answer_epoch}
variable_answer_uepoch: ${answer_us}
variable_bridge_epoch: 0
variable_bridge_uepoch: 0
variable_last_hold_epoch: 0
variable_last_hold_uepoch: 0
variable_hold_accum_seconds: 0
variable_hold_accum_usec: 0
variable_hold_accum_ms: 0
variable_resurrect_epoch: 0
variable_resurrect_uepoch: 0
variable_progress_epoch: 0
variable_progress_uepoch: 0
variable_progress_media_epoch: ${created_epoch}
variable_progress_media_uepoch: ${created_us}
variable_end_epoch: ${end_epoch}
variable_end_uepoch: ${end_us}
variable_last_app: ${last_app}
variable_caller_id: "${caller_name}" <${caller_number}>
variable_duration: ${duration_s}
variable_billsec: ${bill_s}
variable_progresssec: 0
variable_answersec: 0
variable_waitsec: 0
variable_progress_mediasec: 0
variable_flow_billsec: ${bill_s}
variable_mduration: ${duration_ms}
variable_billmsec: ${bill_ms}
variable_progressmsec: 0
variable_answermsec: 0
variable_waitmsec: 0
variable_progress_mediamsec: 0
variable_flow_billmsec: ${bill_ms}
variable_uduration: ${duration_us}
variable_billusec: ${bill_us}
variable_progressusec: 0
variable_answerusec: 0
variable_waitusec: 0
variable_progress_mediausec: 0
variable_flow_billusec: ${bill_us}
variable_sip_hangup_disposition: ${hangup_disposition}
variable_rtp_audio_in_raw_bytes: ${rtp_in_bytes}
variable_rtp_audio_in_media_bytes: ${rtp_in_bytes}
variable_rtp_audio_in_packet_count: ${rtp_in_packets}
variable_rtp_audio_in_media_packet_count: ${rtp_in_packets}
variable_rtp_audio_in_skip_packet_count: 0
variable_rtp_audio_in_jitter_packet_count: 0
variable_rtp_audio_in_dtmf_packet_count: 0
variable_rtp_audio_in_cng_packet_count: 0
variable_rtp_audio_in_flush_packet_count: 0
variable_rtp_audio_in_largest_jb_size: 0
variable_rtp_audio_in_jitter_min_variance: 0.00
variable_rtp_audio_in_jitter_max_variance: 0.00
variable_rtp_audio_in_jitter_loss_rate: 0.00
variable_rtp_audio_in_jitter_burst_rate: 0.00
variable_rtp_audio_in_mean_interval: 0.00
variable_rtp_audio_in_flaw_total: 0
variable_rtp_audio_in_quality_percentage: 100.00
variable_rtp_audio_in_mos: 4.50
variable_rtp_audio_out_raw_bytes: ${rtp_out_bytes}
variable_rtp_audio_out_media_bytes: ${rtp_out_bytes}
variable_rtp_audio_out_packet_count: ${rtp_out_packets}
variable_rtp_audio_out_media_packet_count: ${rtp_out_packets}
variable_rtp_audio_out_skip_packet_count: 0
variable_rtp_audio_out_dtmf_packet_count: 0
variable_rtp_audio_out_cng_packet_count: 0
variable_rtp_audio_rtcp_packet_count: 0
variable_rtp_audio_rtcp_octet_count: 0
