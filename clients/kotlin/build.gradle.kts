// The generated Connect-Kotlin client of every EPOP service (generated/, from
// `buf generate proto --template clients/kotlin/buf.gen.yaml -o clients/kotlin` with protoc
// 31.1 and protoc-gen-connect-kotlin 0.7.4 on PATH), as a library an Android or JVM app
// depends on. The versions are exact: the generated code and the runtimes must agree
// (clients/versions.env).
plugins {
    kotlin("jvm") version "2.1.21"
    `java-library`
}

repositories { mavenCentral() }

dependencies {
    api("com.connectrpc:connect-kotlin-okhttp:0.7.4")
    api("com.connectrpc:connect-kotlin-google-javalite-ext:0.7.4")
    api("com.google.protobuf:protobuf-javalite:4.31.1")
    api("com.google.protobuf:protobuf-kotlin-lite:4.31.1")
}

sourceSets["main"].java.srcDir("generated")
sourceSets["main"].kotlin.srcDir("generated")
